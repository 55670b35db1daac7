import { describe, expect, it } from "vitest";

import { describeDetail, errorFrom, formatBytes, retryAfter } from "./api";

describe("describeDetail", () => {
  it("turns FastAPI's 422 items into field: message lines, without the body and union tags", () => {
    const detail = [
      { loc: ["body", "convert.json_to_csv"], msg: "Value error, convert.json_to_csv needs exactly one of input_file_id or params.json_text" },
      { loc: ["body", "data.csv_summary", "priority"], msg: "Input should be 'high', 'normal' or 'low'" },
    ];
    expect(describeDetail(detail)).toEqual([
      "convert.json_to_csv needs exactly one of input_file_id or params.json_text",
      "priority: Input should be 'high', 'normal' or 'low'",
    ]);
  });

  it("keeps an HTTPException's sentence", () => {
    expect(describeDetail("job 1 not found")).toEqual(["job 1 not found"]);
  });
});

describe("errors people understand", () => {
  it("reads Retry-After as seconds or an HTTP date", () => {
    expect(retryAfter("3")).toBe(3);
    expect(retryAfter(null)).toBeNull();
    expect(retryAfter("")).toBeNull();
    expect(retryAfter(new Date(Date.now() + 4_000).toUTCString())).toBeGreaterThanOrEqual(3);
  });

  it("a 429 carries the wait, a 502 means the platform is unreachable", async () => {
    const limited = await errorFrom(new Response(JSON.stringify({ detail: "rate limit" }), { status: 429, headers: { "Retry-After": "5" } }));
    expect([limited.retryAfterSeconds, limited.unavailable, limited.message]).toEqual([5, false, "Too many requests: the platform's rate limit was reached."]);
    const down = await errorFrom(new Response("<html>502</html>", { status: 502 }));
    expect(down.unavailable).toBe(true);
  });
});

describe("formatBytes", () => {
  it("shows the upload limit the way people read sizes", () => {
    expect(formatBytes(50 * 1024 * 1024)).toBe("50 MB");
    expect(formatBytes(10_000_000)).toBe("9.5 MB");
    expect(formatBytes(512)).toBe("512 bytes");
  });
});
