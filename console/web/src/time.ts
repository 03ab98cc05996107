// Times as operators type them: "now", "6 hours ago", "2 days ago",
// "yesterday", "today", or an ISO 8601 / RFC 3339 date.

const UNITS: Record<string, number> = {
  second: 1,
  minute: 60,
  hour: 3600,
  day: 86400,
  week: 7 * 86400,
  month: 30 * 86400,
  year: 365 * 86400,
};

/** Seconds since the epoch for `text` at `now` (ms), or null. */
export function parseTime(text: string, now: number = Date.now()): number | null {
  const t = text.trim().toLowerCase();
  const nowS = Math.floor(now / 1000);
  if (t === "now") return nowS;
  if (t === "today") return Math.floor(new Date(new Date(now).setHours(0, 0, 0, 0)).getTime() / 1000);
  if (t === "yesterday") return (parseTime("today", now) as number) - 86400;
  const ago = /^(\d+(?:\.\d+)?|an?|one)\s*(second|minute|hour|day|week|month|year)s?\s+ago$/.exec(t);
  if (ago) {
    const n = ago[1] === "a" || ago[1] === "an" || ago[1] === "one" ? 1 : Number(ago[1]);
    return Math.round(nowS - n * UNITS[ago[2]]);
  }
  const parsed = Date.parse(text.trim());
  return Number.isNaN(parsed) ? null : Math.floor(parsed / 1000);
}

export function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The presets of the range picker: [label, start, end]. */
export const PRESETS: [string, string, string][] = [
  ["Last hour", "1 hour ago", "now"],
  ["Last 6 hours", "6 hours ago", "now"],
  ["Last 12 hours", "12 hours ago", "now"],
  ["Last 24 hours", "24 hours ago", "now"],
  ["Last 2 days", "2 days ago", "now"],
  ["Last 7 days", "7 days ago", "now"],
  ["Last 30 days", "30 days ago", "now"],
  ["Last 90 days", "90 days ago", "now"],
  ["Today", "today", "now"],
  ["Yesterday", "yesterday", "today"],
];

/** SI formatting with a unit: 1234567 → "1.23 M". */
export function si(value: number, unit = ""): string {
  const prefixes = ["", "K", "M", "G", "T", "P"];
  let v = Math.abs(value);
  let i = 0;
  while (v >= 1000 && i < prefixes.length - 1) {
    v /= 1000;
    i++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${value < 0 ? "-" : ""}${v.toFixed(i === 0 && Number.isInteger(v) ? 0 : digits)} ${prefixes[i]}${unit}`.trim();
}
