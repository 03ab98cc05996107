// The console API (Weir's /api/v0/console), typed as the OpenAPI document says.

export const API = "/api/v0/console";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void) {
  onUnauthorized = f;
}

async function answer<T>(r: Response): Promise<T> {
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(r.status, text || r.statusText);
  }
  if (!r.ok) {
    if (r.status === 401) onUnauthorized();
    const message = (body as { message?: string } | undefined)?.message ?? r.statusText;
    throw new ApiError(r.status, message);
  }
  return body as T;
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return answer<T>(await fetch(`${API}/${path}`, { signal }));
}

export async function post<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  const r = await fetch(`${API}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body, Object.keys(body as object).sort()),
    signal,
  });
  return answer<T>(r);
}

export async function del(path: string): Promise<void> {
  return answer<void>(await fetch(`${API}/${path}`, { method: "DELETE" }));
}

export interface VisualizeDefaults {
  graphType: string;
  start: string;
  end: string;
  filter: string;
  dimensions: string[];
  limit: number;
  limitType: string;
  bidirectional: boolean;
  previousPeriod: boolean;
}

export interface Configuration {
  version: string;
  defaultVisualizeOptions: VisualizeDefaults;
  dimensionsLimit: number;
  dimensions: string[];
  truncatable: string[];
  homepageTopWidgets: string[];
  /// "flows", and "http" when HAProxy's requests are stored.
  sources: string[];
  httpDimensions: string[];
}

export interface LineAnswer {
  t: string[];
  rows: string[][];
  points: number[][];
  axis: number[];
  "axis-names": Record<string, string>;
  average: number[];
  min: number[];
  max: number[];
  last: number[];
  "95th": number[];
  total: number[];
}

export interface SankeyAnswer {
  rows: string[][];
  xps: number[];
  axis: number[];
  "axis-names": Record<string, string>;
  nodes: { name: string; axis: number }[];
  links: { source: string; target: string; xps: number; axis: number }[];
}

export interface User {
  login: string;
  name?: string;
  email?: string;
  "logout-url"?: string;
  "avatar-url"?: string;
}

export interface SavedFilter {
  id: number;
  user: string;
  shared: boolean;
  description: string;
  content: string;
}

export interface FilterError {
  message: string;
  line: number;
  column: number;
  offset: number;
}

export interface Validation {
  message: string;
  parsed?: string;
  errors?: FilterError[];
}

export interface Completion {
  label: string;
  detail: string;
  quoted: boolean;
}

let configuration: Promise<Configuration> | undefined;
export function getConfiguration(): Promise<Configuration> {
  configuration ??= get<Configuration>("configuration");
  return configuration;
}
