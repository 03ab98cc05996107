// The visualize page's whole state, kept in the URL
// (/visualize/v1-<base64url of JSON with sorted keys>), so a link
// reproduces the view.

export interface State {
  /// "flows" or "http" (HAProxy's requests).
  source: string;
  graphType: string;
  start: string;
  end: string;
  dimensions: string[];
  limit: number;
  limitType: string;
  filter: string;
  units: string;
  bidirectional: boolean;
  previousPeriod: boolean;
  truncateV4: number;
  truncateV6: number;
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, sorted((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

export function encodeState(state: State): string {
  const json = JSON.stringify(sorted(state));
  const bytes = new TextEncoder().encode(json);
  let binary = "";
  bytes.forEach((b) => (binary += String.fromCharCode(b)));
  return "v1-" + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeState(text: string, defaults: State): State {
  if (!text.startsWith("v1-")) return defaults;
  try {
    const b64 = text.slice(3).replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "===".slice((b64.length + 3) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as Partial<State>;
    return { ...defaults, ...parsed };
  } catch {
    return defaults;
  }
}
