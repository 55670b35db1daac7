// The job platform API as the console uses it: same origin under /api (CloudFront's second behaviour, or the
// local console server), so no CORS. Shapes follow services/api/routes/* and services/common/jobs.py.

export const JOB_TYPES = ["data.csv_summary", "convert.csv_to_json", "convert.json_to_csv", "image.thumbnail"] as const;
export type JobType = (typeof JOB_TYPES)[number];
export const PRIORITIES = ["high", "normal", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];
export const STATUSES = ["queued", "running", "succeeded", "failed"] as const;
export type Status = (typeof STATUSES)[number];
export const TERMINAL: ReadonlySet<Status> = new Set(["succeeded", "failed"]);

export interface Job {
  id: string;
  type: string;
  priority: Priority;
  status: Status;
  version: number;
  attempts: number;
  input_file_id: string | null;
  batch_id: string | null;
  result: { location: string; summary: Record<string, unknown> | null } | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface JobPage {
  items: Job[];
  next_cursor: string | null;
}

export interface UploadedFile {
  id: string;
  filename: string | null;
  content_type: string;
  size_bytes: number;
  sha256: string;
}

export interface Limits {
  max_upload_bytes: number;
  max_batch_jobs: number;
  rate_limit_per_second: number;
  rate_limit_burst: number;
  job_types: string[];
}

export interface JobRequest {
  type: JobType;
  priority: Priority;
  input_file_id?: string;
  params?: Record<string, unknown>;
}

export const API = "/api";
const CLIENT_KEY = "job-console-client-id";

/** The caller identity the API lists jobs by: one per browser, kept across reloads. */
export function clientId(storage: Storage = localStorage): string {
  let id = storage.getItem(CLIENT_KEY);
  if (!id) {
    id = `console-${crypto.randomUUID()}`;
    storage.setItem(CLIENT_KEY, id);
  }
  return id;
}

/** What went wrong, in words a person can act on. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterSeconds: number | null = null,
    readonly fieldErrors: string[] = [],
  ) {
    super(message);
  }

  /** The API (or the edge in front of it) is unreachable: retry later, nothing was accepted. */
  get unavailable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

interface ValidationItem {
  loc?: (string | number)[];
  msg?: string;
}

/** FastAPI's 422 body (`{"detail": [{loc, msg}]}`) or an HTTPException's (`{"detail": "..."}`) as sentences. */
export function describeDetail(detail: unknown): string[] {
  if (typeof detail === "string") return [detail];
  if (!Array.isArray(detail)) return [];
  return detail.map((item: ValidationItem) => {
    const where = (item.loc ?? []).filter((part) => part !== "body" && !isJobTypeTag(part)).join(".");
    const message = (item.msg ?? "invalid value").replace(/^Value error, /, "");
    return where ? `${where}: ${message}` : message;
  });
}

function isJobTypeTag(part: string | number): boolean {
  return typeof part === "string" && (JOB_TYPES as readonly string[]).includes(part);
}

export function retryAfter(header: string | null): number | null {
  if (header === null || header.trim() === "") return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let detail: unknown = null;
  try {
    detail = ((await response.json()) as { detail?: unknown }).detail;
  } catch {
    // not JSON: an edge or proxy error page
  }
  const messages = describeDetail(detail);
  const wait = retryAfter(response.headers.get("Retry-After"));
  const summary =
    response.status === 429
      ? "Too many requests: the platform's rate limit was reached."
      : response.status === 422
        ? "The request was not accepted:"
        : response.status === 404
          ? (messages[0] ?? "Not found.")
          : response.status >= 502
            ? "The job platform is not reachable right now."
            : (messages[0] ?? `The request failed (HTTP ${response.status}).`);
  return new ApiError(response.status, summary, wait, response.status === 422 ? messages : []);
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${API}${path}`, {
      ...init,
      headers: { "X-Client-Id": clientId(), ...(init.body ? { "Content-Type": "application/json" } : {}), ...init.headers },
    });
  } catch {
    throw new ApiError(0, "The job platform is not reachable right now.");
  }
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as T;
}

export const getLimits = () => request<Limits>("/limits");
export const getJob = (id: string) => request<Job>(`/jobs/${encodeURIComponent(id)}`);

export function listJobs(filters: { status?: string; type?: string; cursor?: string | null; limit?: number }) {
  const query = new URLSearchParams();
  if (filters.status) query.set("status", filters.status);
  if (filters.type) query.set("type", filters.type);
  if (filters.cursor) query.set("cursor", filters.cursor);
  query.set("limit", String(filters.limit ?? 20));
  return request<JobPage>(`/jobs?${query.toString()}`);
}

/** A retried click must not submit twice: the same key returns the first job (200, Idempotent-Replayed). */
export function submitJob(job: JobRequest, idempotencyKey: string) {
  return request<Job>("/jobs", { method: "POST", body: JSON.stringify(job), headers: { "Idempotency-Key": idempotencyKey } });
}

export function submitBatch(jobs: JobRequest[], idempotencyKey: string) {
  return request<{ id: string; jobs: Job[] }>("/batches", {
    method: "POST",
    body: JSON.stringify({ jobs }),
    headers: { "Idempotency-Key": idempotencyKey },
  });
}

/** Upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
export function uploadFile(file: File, onProgress: (fraction: number) => void): Promise<UploadedFile> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/files?filename=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.setRequestHeader("X-Client-Id", clientId());
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onerror = () => reject(new ApiError(0, "The job platform is not reachable right now."));
    xhr.onload = () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { "Retry-After": xhr.getResponseHeader("Retry-After") ?? "" },
      });
      if (xhr.status === 201) resolve(JSON.parse(xhr.responseText) as UploadedFile);
      else void errorFrom(response).then(reject);
    };
    xhr.send(file);
  });
}

export function formatBytes(bytes: number): string {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export type ResultContent = { kind: "text"; text: string; truncated: boolean } | { kind: "image"; url: string };
const RESULT_PREVIEW_CHARS = 20_000;

/** A finished job's result file: text (JSON, CSV) shown as is, images as an object URL. */
export async function getResult(id: string): Promise<ResultContent> {
  let response: Response;
  try {
    response = await fetch(`${API}/jobs/${encodeURIComponent(id)}/result`, { headers: { "X-Client-Id": clientId() } });
  } catch {
    throw new ApiError(0, "The job platform is not reachable right now.");
  }
  if (response.status === 410) throw new ApiError(410, "This job's result has expired: run the job again.");
  if (!response.ok) throw await errorFrom(response);
  if ((response.headers.get("Content-Type") ?? "").startsWith("image/")) {
    return { kind: "image", url: URL.createObjectURL(await response.blob()) };
  }
  const text = await response.text();
  return { kind: "text", text: text.slice(0, RESULT_PREVIEW_CHARS), truncated: text.length > RESULT_PREVIEW_CHARS };
}
