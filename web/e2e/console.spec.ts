import AxeBuilder from "@axe-core/playwright";
import { type Page, expect, test } from "@playwright/test";

// One session against the real platform (API, worker, PostgreSQL, Redis, local SQS) behind the console server,
// in order: the rate limit's bucket and the job list carry over from test to test.
test.describe.configure({ mode: "serial" });

const SCREENSHOTS = process.env.SCREENSHOT_DIR ?? "test-results";
const CONTROL = process.env.CONTROL_URL ?? "";
const CSV = "region,amount\nnorth,12.5\nsouth,7\neast,3.25\n";

async function expectAccessible(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(", ")}`)).toEqual([]);
}

let page: Page;
const cspViolations: string[] = [];

test.beforeAll(async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  // The console server sends the distribution's CSP: anything the app loads outside it fails the run.
  page.on("console", (message) => {
    if (message.type() === "error" && /Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  await page.goto("/");
  await expect(page.getByText(/Up to 50 MB per file/)).toBeVisible();
});

test.afterAll(async () => {
  await page.context().close();
  expect(cspViolations).toEqual([]);
});

test("upload a CSV, submit a job, watch it succeed live, open the result", async () => {
  await page.getByLabel(/Input file/).setInputFiles({ name: "sales.csv", mimeType: "text/csv", buffer: Buffer.from(CSV) });
  await expect(page.getByTestId("uploaded")).toContainText("Uploaded sales.csv");
  await expect(page.getByLabel("Upload progress")).toHaveAttribute("value", "1");
  await page.getByLabel("Job type").selectOption("data.csv_summary");
  await page.getByLabel("Priority").selectOption("high");
  await page.getByRole("button", { name: "Submit job" }).click();
  await expect(page.getByText("Job accepted.")).toBeVisible();
  // The list was loaded before this job existed and the page is never reloaded: the change arrives as an event.
  const row = page.locator("tbody tr").first();
  await expect(row.getByTestId("status")).toHaveText("succeeded");
  await expect(row).toContainText("high");
  await expectAccessible(page);
  await page.screenshot({ path: `${SCREENSHOTS}/console-jobs.png` });
  await row.getByRole("button").click();
  await expect(page.getByTestId("result-summary")).toContainText(`"rows": 3`);
  await page.getByRole("button", { name: "Open result" }).click();
  await expect(page.getByTestId("result-content")).toContainText("amount");
  await page.screenshot({ path: `${SCREENSHOTS}/console-result.png` });
  await page.getByRole("button", { name: "Close" }).click();
  await page.getByRole("button", { name: "Remove" }).click();
});

test("submit a batch with the keyboard only", async () => {
  await page.getByLabel("Job type").selectOption("convert.csv_to_json");
  await page.getByLabel(/Or paste CSV text/).fill(CSV);
  await page.getByRole("button", { name: "Add to batch" }).focus();
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  await page.keyboard.press("Tab");
  await expect(page.getByRole("button", { name: "Submit batch (2)" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByText("Batch of 2 jobs accepted.")).toBeVisible();
  const statuses = page.locator("tbody tr").filter({ hasText: "convert.csv_to_json" }).getByTestId("status");
  await expect(statuses).toHaveText(["succeeded", "succeeded"]);
});

test("a 422 shows the API's validation message", async () => {
  await page.getByLabel("Job type").selectOption("convert.json_to_csv");
  await page.getByLabel(/Or paste JSON text/).fill("");
  await page.getByRole("button", { name: "Submit job" }).click();
  await expect(page.getByText("The request was not accepted:")).toBeVisible();
  await expect(page.getByText(/needs exactly one of input_file_id or params.json_text/)).toBeVisible();
});

test("a 429 shows Retry-After as a countdown and holds submissions", async () => {
  await page.getByLabel("Job type").selectOption("data.csv_summary");
  await page.getByLabel(/Or paste CSV text/).fill(CSV);
  const submit = page.getByRole("button", { name: "Submit job" });
  const countdown = page.getByTestId("countdown");
  for (let i = 0; i < 20 && !(await countdown.isVisible()); i++) {
    const answered = page.waitForResponse((r) => r.url().endsWith("/api/jobs") && r.request().method() === "POST");
    await submit.click();
    await answered;
  }
  await expect(countdown).toContainText(/submit again in \d+ s/);
  await expect(submit).toBeDisabled();
  await expect(page.getByText("Too many requests")).toBeVisible();
  await page.screenshot({ path: `${SCREENSHOTS}/console-rate-limited.png` });
  await expect(submit).toBeEnabled({ timeout: 15_000 });
});

test("the API stopped mid-session: a banner, retried, then back", async () => {
  expect(CONTROL, "CONTROL_URL is set by the pytest driver").not.toBe("");
  await page.request.post(`${CONTROL}/stop`);
  await page.getByLabel("Status").selectOption("succeeded");
  await expect(page.getByRole("alert")).toContainText("not reachable");
  await page.screenshot({ path: `${SCREENSHOTS}/console-api-down.png` });
  await page.request.post(`${CONTROL}/start`);
  await expect(page.getByRole("alert")).toHaveCount(0);
  await expect(page.locator("tbody tr").first().getByTestId("status")).toHaveText("succeeded");
});

test("a phone-sized viewport: nothing scrolls sideways, still accessible", async ({ browser }) => {
  // The same browser identity (the console keeps it in localStorage), so the same jobs are listed.
  const client = await page.evaluate(() => localStorage.getItem("job-console-client-id"));
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await context.addInitScript((id) => localStorage.setItem("job-console-client-id", id ?? ""), client);
  const phone = await context.newPage();
  await phone.goto("/jobs");
  await expect(phone.getByRole("heading", { name: "Your jobs" })).toBeVisible();
  // A fresh page lists what the API lists for this browser: nothing lives only in a page.
  const listed = await phone.request.get("/api/jobs?limit=100", { headers: { "X-Client-Id": client ?? "" } });
  const { items } = (await listed.json()) as { items: unknown[] };
  expect(items.length).toBeGreaterThanOrEqual(4);
  await expect(phone.locator("tbody tr")).toHaveCount(Math.min(items.length, 20));
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await expectAccessible(phone);
  await phone.getByRole("heading", { name: "Your jobs" }).scrollIntoViewIfNeeded();
  await phone.screenshot({ path: `${SCREENSHOTS}/console-phone.png` });
  await context.close();
});
