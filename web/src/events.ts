// Live job status from the API's server-sent events (GET /jobs/{id}/events), read with fetch so a reconnect can
// send Last-Event-ID itself and survive an edge 502 (EventSource gives up for good on any non-200 answer).

import { API, type Job, TERMINAL, clientId } from "./api";

export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

/** Split complete events off `buffer` (the text/event-stream format); the incomplete tail is returned as `rest`. */
export function parseSse(buffer: string): { events: SseEvent[]; rest: string } {
  const normalized = buffer.replace(/\r\n?/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop() ?? "";
  const events: SseEvent[] = [];
  for (const block of blocks) {
    let id: string | null = null;
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue; // comments are keepalives
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) events.push({ id, event, data: data.join("\n") });
  }
  return { events, rest };
}

export type StreamState = "live" | "reconnecting" | "done" | "gone";

export interface FollowOptions {
  onJob: (job: Job) => void;
  onState: (state: StreamState) => void;
  /** Delay before reconnect attempt `n` (0-based), in ms. */
  backoff?: (attempt: number) => number;
}

export const defaultBackoff = (attempt: number) => Math.min(10_000, 500 * 2 ** attempt);

/** Follow one job until it reaches a final status; returns a function that stops following. */
export function followJob(id: string, { onJob, onState, backoff = defaultBackoff }: FollowOptions): () => void {
  const controller = new AbortController();
  let lastEventId: string | null = null;
  let attempt = 0;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      controller.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    });

  async function readOnce(): Promise<"terminal" | "ended" | "gone"> {
    const headers: Record<string, string> = { Accept: "text/event-stream", "X-Client-Id": clientId() };
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(`${API}/jobs/${encodeURIComponent(id)}/events`, { headers, signal: controller.signal });
    if (response.status === 404) return "gone";
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    onState("live");
    attempt = 0;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      const parsed = parseSse(buffer + value);
      buffer = parsed.rest;
      for (const event of parsed.events) {
        if (event.id !== null) lastEventId = event.id;
        if (event.event !== "status") continue;
        const job = JSON.parse(event.data) as Job;
        onJob(job);
        if (TERMINAL.has(job.status)) {
          await reader.cancel();
          return "terminal";
        }
      }
    }
  }

  void (async () => {
    while (!controller.signal.aborted) {
      try {
        const outcome = await readOnce();
        if (outcome === "terminal") return onState("done");
        if (outcome === "gone") return onState("gone");
        // The server ends a stream after its maximum age: reconnect at once.
      } catch {
        if (controller.signal.aborted) return;
        onState("reconnecting");
        await sleep(backoff(attempt));
        attempt += 1;
      }
    }
  })();
  return () => controller.abort();
}
