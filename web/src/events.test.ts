import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { type Job } from "./api";
import { followJob, parseSse } from "./events";

describe("parseSse", () => {
  it("splits complete events, skips keepalive comments, keeps the incomplete tail", () => {
    const text = 'id: 1\nevent: status\ndata: {"a":1}\n\n: keepalive\n\nid: 2\nevent: status\ndata: {"a"';
    const { events, rest } = parseSse(text);
    expect(events).toEqual([{ id: "1", event: "status", data: '{"a":1}' }]);
    expect(rest).toBe('id: 2\nevent: status\ndata: {"a"');
  });
});

function job(status: Job["status"], version: number): Job {
  return { id: "j1", status, version } as Job;
}

function stream(...events: Job[]): Response {
  const body = events.map((j) => `id: ${j.version}\nevent: status\ndata: ${JSON.stringify(j)}\n\n`).join("");
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

const storage = new Map<string, string>();
beforeEach(() => {
  vi.stubGlobal("localStorage", { getItem: (k: string) => storage.get(k) ?? null, setItem: (k: string, v: string) => storage.set(k, v) });
});
afterEach(() => vi.unstubAllGlobals());

describe("followJob", () => {
  it("reconnects after a failure with the last event id and stops at a final status", async () => {
    const calls: (string | undefined)[] = [];
    const answers = [() => stream(job("queued", 1)), () => Promise.reject(new TypeError("network")), () => new Response("", { status: 502 }), () => stream(job("running", 2), job("succeeded", 3))];
    vi.stubGlobal("fetch", (_url: string, init: RequestInit) => {
      calls.push((init.headers as Record<string, string>)["Last-Event-ID"]);
      return Promise.resolve(answers[calls.length - 1]());
    });
    const seen: string[] = [];
    const states: string[] = [];
    await new Promise<void>((resolve) => {
      followJob("j1", {
        onJob: (j) => seen.push(j.status),
        onState: (s) => {
          states.push(s);
          if (s === "done") resolve();
        },
        backoff: () => 1,
      });
    });
    expect(seen).toEqual(["queued", "running", "succeeded"]);
    expect(calls).toEqual([undefined, "1", "1", "1"]);
    expect(states).toEqual(["live", "reconnecting", "reconnecting", "live", "done"]);
  });

  it("a 404 means the job is gone (expired)", async () => {
    vi.stubGlobal("fetch", () => Promise.resolve(new Response("{}", { status: 404 })));
    const state = await new Promise<string>((resolve) => followJob("j1", { onJob: () => undefined, onState: resolve }));
    expect(state).toBe("gone");
  });
});
