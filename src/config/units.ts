/**
 * Sizes and rates as operators write them: "0", "4096", "512K", "10M", "1.5G", "2T" (binary
 * multiples: K = 1024). Used by the `berth user` options and shown back by `berth user list`.
 * Also the longest duration a timer can hold.
 */

/** The longest timer Node keeps (ms): a longer one fires after 1 ms, with a TimeoutOverflowWarning. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const MULTIPLIERS: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Bytes of a size like "10M" or "1.5G" (a trailing "B", "iB" or "/s" is allowed); null when malformed.
 * A fraction needs a unit ("1.5" bytes is no size, as the YAML number 1.5 is none), and a size that
 * is not 0 must come to a byte at least: rounded to 0 it would mean unlimited. */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?(?:\/s)?\s*$/i.exec(text);
  if (!m) return null;
  const unit = (m[2] ?? "").toUpperCase();
  if (unit === "" && m[1]?.includes(".") === true) return null;
  const value = Number(m[1]) * (MULTIPLIERS[unit] ?? 1);
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) return null;
  const bytes = Math.round(value);
  return bytes === 0 && value > 0 ? null : bytes;
}

/** A byte count in the largest unit that keeps it at or above 1 ("1.5 GiB", "512 KiB", "100 B"). */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const shown = i === 0 || value >= 100 ? Math.round(value).toString() : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${units[i] ?? "B"}`;
}
