import { defineConfig } from "@playwright/test";

// Driven by tests/web/test_console_browser.py, which starts the job platform and the console server and passes
// their URLs. Debian's Chromium (apt), not a downloaded browser; CI runs as root, hence --no-sandbox.
export default defineConfig({
  testDir: "e2e",
  workers: 1,
  fullyParallel: false,
  timeout: 30_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: process.env.CONSOLE_URL ?? "http://127.0.0.1:8000",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    },
  },
});
