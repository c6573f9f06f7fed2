// The API's routes as the page calls them. The token and profile live in sessionStorage
// only (never in a URL); every data call carries the token.

const TOKEN = "aitrainer.token";
const PROFILE = "aitrainer.profile";

export interface Session {
  token: string;
  profile: string;
}

export function session(): Session | null {
  const token = sessionStorage.getItem(TOKEN);
  const profile = sessionStorage.getItem(PROFILE);
  return token && profile ? { token, profile } : null;
}

export function signIn(token: string, profile: string): void {
  sessionStorage.setItem(TOKEN, token);
  sessionStorage.setItem(PROFILE, profile);
}

export function signOut(): void {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(PROFILE);
}

/** An answer other than 2xx: its status and the API's message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function call<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token ?? session()?.token ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let answer: unknown = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const message = (answer as { message?: string; detail?: unknown } | null)?.message;
    throw new ApiError(response.status, message ?? `${response.status} ${response.statusText}`);
  }
  return answer as T;
}

/** How often the pages poll while something runs. */
export const POLL_MS = 2000;

/** The wait before asking again after `failures` failed polls in a row: doubling, capped. */
export function retryDelay(failures: number): number {
  return POLL_MS * Math.min(2 ** failures, 15);
}

/** A refusal that asking again will not change: a bad token, another profile, gone. */
export function isFinal(error: unknown): boolean {
  return error instanceof ApiError && [400, 401, 403, 404].includes(error.status);
}

/** A file behind a SAS URL (no Authorization header: the URL carries its signature). */
export async function download(url: string): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) throw new ApiError(response.status, `download failed: ${response.status}`);
  return response;
}

export type State = "PENDING" | "DOWNLOADING" | "DOWNLOADED" | "RUNNING" | "EXPORTING" | "SUCCESS" | "FAILED" | "CANCELLED";
export const PIPELINE: State[] = ["PENDING", "DOWNLOADING", "DOWNLOADED", "RUNNING", "EXPORTING", "SUCCESS"];
export const FINISHED: State[] = ["SUCCESS", "FAILED", "CANCELLED"];

export interface Summary {
  project_name: string;
  result: State;
  created: string;
  lastupdate: string;
  current_epoch: number;
  epochs: number | null;
  accuracy: number | null;
}

export interface Status {
  result: State;
  current_epoch: number;
  epochs: number;
  loss: number | null;
  accuracy: number | null;
  test_accuracy: number | null;
  lastupdate: string;
  last_epoch_duration_seconds: number | null;
  message: string;
  profile_id: string;
  project_name: string;
  created: string;
  parameters: Record<string, unknown> & { model_type: string; image_size: number };
  exports: Record<string, string>;
  manifest: string | null;
  dataset_report: string | null;
  files: Record<string, string>;
}

export const path = {
  profiles: "/profiles",
  list: (profile: string) => `/trainings/${encodeURIComponent(profile)}`,
  status: (profile: string, name: string) =>
    `/statustraining/${encodeURIComponent(profile)}/${encodeURIComponent(name)}`,
  cancel: (profile: string, name: string) =>
    `/canceltraining/${encodeURIComponent(profile)}/${encodeURIComponent(name)}`,
  remove: (profile: string, name: string) =>
    `/trainings/${encodeURIComponent(profile)}/${encodeURIComponent(name)}`,
  start: "/starttraining/",
};
