import { useCallback, useEffect, useRef, useState } from "react";

import {
  ApiError,
  type Job,
  type JobRequest,
  JOB_TYPES,
  type JobType,
  type Limits,
  PRIORITIES,
  type Priority,
  STATUSES,
  TERMINAL,
  type UploadedFile,
  formatBytes,
  getJob,
  getResult,
  type ResultContent,
  getLimits,
  listJobs,
  request,
  submitBatch,
  submitJob,
  uploadFile,
} from "./api";
import { type StreamState, followJob } from "./events";

const HEALTH_RETRY_MS = 2000;
const FILE_TYPES: Record<JobType, string> = {
  "data.csv_summary": "CSV",
  "convert.csv_to_json": "CSV",
  "convert.json_to_csv": "JSON",
  "image.thumbnail": "image",
};

/** Seconds left of a Retry-After, ticking down to 0. */
function useCountdown(): [number, (seconds: number) => void] {
  const [left, setLeft] = useState(0);
  useEffect(() => {
    if (left <= 0) return;
    const timer = setTimeout(() => setLeft((value) => value - 1), 1000);
    return () => clearTimeout(timer);
  }, [left]);
  return [left, setLeft];
}

function newKey(): string {
  return crypto.randomUUID();
}

export function App() {
  const [limits, setLimits] = useState<Limits | null>(null);
  const [apiDown, setApiDown] = useState(false);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [filters, setFilters] = useState({ status: "", type: "" });
  const [selected, setSelected] = useState<string | null>(null);
  const [streams, setStreams] = useState<Record<string, StreamState>>({});
  const stops = useRef(new Map<string, () => void>());

  const upsert = useCallback((job: Job) => {
    setJobs((current) => {
      const index = current.findIndex((j) => j.id === job.id);
      if (index === -1) return [job, ...current];
      if (current[index].version > job.version) return current;
      const copy = current.slice();
      copy[index] = job;
      return copy;
    });
  }, []);

  const follow = useCallback(
    (job: Job) => {
      if (TERMINAL.has(job.status) || stops.current.has(job.id)) return;
      const stop = followJob(job.id, {
        onJob: upsert,
        onState: (state) => {
          setStreams((current) => ({ ...current, [job.id]: state }));
          if (state === "done" || state === "gone") stops.current.delete(job.id);
        },
      });
      stops.current.set(job.id, stop);
    },
    [upsert],
  );

  const noteError = useCallback((error: unknown) => {
    if (error instanceof ApiError && error.unavailable) setApiDown(true);
  }, []);

  const load = useCallback(
    async (append: boolean, from: string | null = null) => {
      try {
        const page = await listJobs({ ...filters, cursor: from });
        setJobs((current) => (append ? [...current, ...page.items] : page.items));
        setCursor(page.next_cursor);
        page.items.forEach(follow);
      } catch (error) {
        noteError(error);
      }
    },
    [filters, follow, noteError],
  );

  useEffect(() => {
    getLimits().then(setLimits, noteError);
  }, [noteError]);

  useEffect(() => {
    void load(false);
  }, [load]);

  // While the API is down, check its liveness every few seconds; when it answers, reload what we show.
  useEffect(() => {
    if (!apiDown) return;
    const timer = setInterval(() => {
      request("/health").then(() => {
        setApiDown(false);
        if (!limits) getLimits().then(setLimits, noteError);
        void load(false);
      }, () => undefined);
    }, HEALTH_RETRY_MS);
    return () => clearInterval(timer);
  }, [apiDown, limits, load, noteError]);

  useEffect(() => {
    const running = stops.current;
    return () => running.forEach((stop) => stop());
  }, []);

  const accepted = useCallback(
    (created: Job[]) => {
      created.forEach((job) => {
        upsert(job);
        follow(job);
      });
    },
    [follow, upsert],
  );

  return (
    <>
      <header className="top">
        <h1>Job platform console</h1>
      </header>
      {apiDown && (
        <div className="banner" role="alert">
          The job platform is not reachable right now. Nothing you submitted is lost; retrying every{" "}
          {HEALTH_RETRY_MS / 1000} seconds…
        </div>
      )}
      <main>
        <SubmitPanel limits={limits} onAccepted={accepted} onError={noteError} />
        <section aria-labelledby="jobs-heading" className="panel">
          <h2 id="jobs-heading">Your jobs</h2>
          <div className="filters">
            <label>
              Status
              <select value={filters.status} onChange={(e) => setFilters({ ...filters, status: e.target.value })}>
                <option value="">any</option>
                {STATUSES.map((s) => (
                  <option key={s}>{s}</option>
                ))}
              </select>
            </label>
            <label>
              Type
              <select value={filters.type} onChange={(e) => setFilters({ ...filters, type: e.target.value })}>
                <option value="">any</option>
                {JOB_TYPES.map((t) => (
                  <option key={t}>{t}</option>
                ))}
              </select>
            </label>
          </div>
          <JobTable jobs={jobs} streams={streams} onOpen={setSelected} />
          {cursor && (
            <button type="button" onClick={() => void load(true, cursor)}>
              Load more
            </button>
          )}
        </section>
        {selected && <JobDetail id={selected} onClose={() => setSelected(null)} onError={noteError} />}
      </main>
    </>
  );
}

function SubmitPanel(props: { limits: Limits | null; onAccepted: (jobs: Job[]) => void; onError: (e: unknown) => void }) {
  const { limits, onAccepted, onError } = props;
  const [type, setType] = useState<JobType>("data.csv_summary");
  const [priority, setPriority] = useState<Priority>("normal");
  const [inline, setInline] = useState("");
  const [width, setWidth] = useState(256);
  const [height, setHeight] = useState(256);
  const [format, setFormat] = useState("png");
  const [file, setFile] = useState<UploadedFile | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [dragging, setDragging] = useState(false);
  const [batch, setBatch] = useState<JobRequest[]>([]);
  const [message, setMessage] = useState<{ text: string; details: string[] } | null>(null);
  const [wait, setWait] = useCountdown();
  const [busy, setBusy] = useState(false);
  const key = useRef(newKey());

  const fail = (error: unknown) => {
    onError(error);
    if (error instanceof ApiError) {
      setMessage({ text: error.message, details: error.fieldErrors });
      if (error.status === 429 && error.retryAfterSeconds !== null) setWait(error.retryAfterSeconds);
    } else {
      setMessage({ text: String(error), details: [] });
    }
  };

  const upload = async (chosen: File) => {
    setMessage(null);
    if (limits && chosen.size > limits.max_upload_bytes) {
      setMessage({ text: `${chosen.name} is ${formatBytes(chosen.size)}; the limit is ${formatBytes(limits.max_upload_bytes)}.`, details: [] });
      return;
    }
    setProgress(0);
    try {
      setFile(await uploadFile(chosen, setProgress));
      setProgress(1);
    } catch (error) {
      setProgress(null);
      fail(error);
    }
  };

  const job = (): JobRequest => {
    const request: JobRequest = { type, priority };
    if (file) request.input_file_id = file.id;
    if (type === "image.thumbnail") request.params = { width, height, format };
    else if (!file && inline) request.params = type === "convert.json_to_csv" ? { json_text: inline } : { csv: inline };
    return request;
  };

  const submit = async (jobs: JobRequest[]) => {
    setBusy(true);
    setMessage(null);
    try {
      const created = jobs.length === 1 ? [await submitJob(jobs[0], key.current)] : (await submitBatch(jobs, key.current)).jobs;
      onAccepted(created);
      setMessage({ text: jobs.length === 1 ? "Job accepted." : `Batch of ${created.length} jobs accepted.`, details: [] });
      setBatch([]);
      key.current = newKey();
    } catch (error) {
      fail(error);
      // A rejected request may be corrected and sent again: only a network failure is retried with the same key.
      if (!(error instanceof ApiError && error.unavailable)) key.current = newKey();
    } finally {
      setBusy(false);
    }
  };

  const blocked = busy || wait > 0;
  return (
    <section aria-labelledby="submit-heading" className="panel">
      <h2 id="submit-heading">Submit a job</h2>
      <div
        className={dragging ? "drop dragging" : "drop"}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          const dropped = e.dataTransfer.files[0];
          if (dropped) void upload(dropped);
        }}
      >
        <label htmlFor="file">Input file ({FILE_TYPES[type]}) — drop it here or choose one</label>
        <input id="file" type="file" onChange={(e) => e.target.files?.[0] && void upload(e.target.files[0])} />
        <p className="hint" id="limit">
          {limits ? `Up to ${formatBytes(limits.max_upload_bytes)} per file.` : "Loading the upload limit…"}
        </p>
        {progress !== null && (
          <progress aria-label="Upload progress" max={1} value={progress}>
            {Math.round(progress * 100)}%
          </progress>
        )}
        {file && (
          <p className="uploaded" data-testid="uploaded">
            Uploaded {file.filename} ({formatBytes(file.size_bytes)}){" "}
            <button type="button" onClick={() => setFile(null)}>
              Remove
            </button>
          </p>
        )}
      </div>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit([job()]);
        }}
      >
        <label>
          Job type
          <select value={type} onChange={(e) => setType(e.target.value as JobType)}>
            {JOB_TYPES.map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          Priority
          <select value={priority} onChange={(e) => setPriority(e.target.value as Priority)}>
            {PRIORITIES.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        {type === "image.thumbnail" ? (
          <fieldset>
            <legend>Thumbnail</legend>
            <label>
              Width <input type="number" min={1} max={4096} value={width} onChange={(e) => setWidth(Number(e.target.value))} />
            </label>
            <label>
              Height <input type="number" min={1} max={4096} value={height} onChange={(e) => setHeight(Number(e.target.value))} />
            </label>
            <label>
              Format
              <select value={format} onChange={(e) => setFormat(e.target.value)}>
                <option>png</option>
                <option>jpeg</option>
                <option>webp</option>
              </select>
            </label>
          </fieldset>
        ) : (
          <label>
            Or paste {FILE_TYPES[type]} text
            <textarea rows={4} value={inline} disabled={file !== null} onChange={(e) => setInline(e.target.value)} />
          </label>
        )}
        <div className="actions">
          <button type="submit" disabled={blocked}>
            Submit job
          </button>
          <button type="button" disabled={limits !== null && batch.length >= limits.max_batch_jobs} onClick={() => setBatch([...batch, job()])}>
            Add to batch
          </button>
          <button type="button" disabled={blocked || batch.length === 0} onClick={() => void submit(batch)}>
            Submit batch ({batch.length})
          </button>
        </div>
      </form>
      <div aria-live="polite">
        {wait > 0 && (
          <p className="warning" data-testid="countdown">
            Rate limited: you can submit again in {wait} s.
          </p>
        )}
        {message && (
          <div className={message.details.length ? "error" : "note"}>
            <p>{message.text}</p>
            {message.details.length > 0 && (
              <ul>
                {message.details.map((d) => (
                  <li key={d}>{d}</li>
                ))}
              </ul>
            )}
          </div>
        )}
      </div>
    </section>
  );
}

function JobTable(props: { jobs: Job[]; streams: Record<string, StreamState>; onOpen: (id: string) => void }) {
  if (props.jobs.length === 0) return <p>No jobs yet.</p>;
  return (
    <table>
      <caption className="visually-hidden">Jobs, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Job</th>
          <th scope="col">Type</th>
          <th scope="col">Priority</th>
          <th scope="col">Status</th>
        </tr>
      </thead>
      <tbody>
        {props.jobs.map((job) => (
          <tr key={job.id} data-job-id={job.id}>
            <td>
              <button type="button" className="link" onClick={() => props.onOpen(job.id)}>
                {job.id.slice(0, 8)}
              </button>
            </td>
            <td>{job.type}</td>
            <td>{job.priority}</td>
            <td>
              <span className={`status ${job.status}`} data-testid="status">
                {job.status}
              </span>
              {props.streams[job.id] === "reconnecting" && <span className="hint"> (reconnecting…)</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function JobDetail(props: { id: string; onClose: () => void; onError: (e: unknown) => void }) {
  const { id, onClose, onError } = props;
  const [job, setJob] = useState<Job | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [content, setContent] = useState<ResultContent | null>(null);
  const open = () =>
    getResult(id).then(setContent, (error: unknown) => {
      onError(error);
      setProblem(error instanceof Error ? error.message : String(error));
    });
  useEffect(() => {
    setJob(null);
    setProblem(null);
    setContent(null);
    getJob(id).then(setJob, (error: unknown) => {
      onError(error);
      setProblem(
        error instanceof ApiError && error.status === 404
          ? "This job no longer exists: it expired or was removed."
          : error instanceof Error
            ? error.message
            : String(error),
      );
    });
  }, [id, onError]);
  // An image result is an object URL holding the whole image: release it when another replaces it or on close.
  useEffect(() => {
    const url = content?.kind === "image" ? content.url : null;
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [content]);
  return (
    <section aria-labelledby="detail-heading" className="panel">
      <h2 id="detail-heading">Job {id.slice(0, 8)}</h2>
      {problem && <p className="error">{problem}</p>}
      {job && (
        <dl>
          <dt>Status</dt>
          <dd>{job.status}</dd>
          <dt>Attempts</dt>
          <dd>{job.attempts}</dd>
          {job.error && (
            <>
              <dt>Error</dt>
              <dd>{job.error}</dd>
            </>
          )}
          {job.result && (
            <>
              <dt>Result</dt>
              <dd>
                <code>{job.result.location}</code>
              </dd>
              <dt>Summary</dt>
              <dd>
                <pre data-testid="result-summary">{JSON.stringify(job.result.summary, null, 2)}</pre>
              </dd>
            </>
          )}
        </dl>
      )}
      {job?.result && !content && (
        <button type="button" onClick={() => void open()}>
          Open result
        </button>
      )}
      {content?.kind === "text" && (
        <pre data-testid="result-content" tabIndex={0} aria-label="Result">
          {content.text}
          {content.truncated ? "\n… (preview truncated)" : ""}
        </pre>
      )}
      {content?.kind === "image" && <img src={content.url} alt={`Result of job ${id.slice(0, 8)}`} />}
      <button type="button" onClick={onClose}>
        Close
      </button>
    </section>
  );
}
