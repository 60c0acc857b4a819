/**
 * The defender (issue "Abuse resistance"): every client address collects a score for what it does
 * wrong — failed logins, connections or logins refused by a limit, protocol abuse — and an address
 * whose score within the observation window reaches the threshold is banned. A ban lasts banTime,
 * and each further ban of the same address lasts banGrowth times longer, up to banTimeMax. Trusted
 * networks (the allow-list) are never scored or banned. Memory is bounded: past maxEntries the least
 * recently seen address is forgotten.
 *
 * The window is kept as a few time slots per address (not one record per offence), so an address
 * costs the same memory whatever it sends; an offence stops counting between 9/10 of the window
 * and the whole window after it happened.
 */
import { BlockList } from "node:net";
import { parseCidrList, type Config } from "../config/schema.ts";
import type { LoginGuard } from "./types.ts";

/** The `defender` section of the config. */
export type DefenderSettings = Config["defender"];

/** What an address can be scored for. */
export type Offence = "login" | "limit" | "abuse";

/** A ban in effect. */
export interface BanInfo {
  readonly address: string;
  /** When the ban ends (ms since the epoch, as the wall clock read at start counts them). */
  readonly until: number;
  /** Seconds left, rounded up. */
  readonly remaining: number;
  /** What led to it, for the 421 text and the log. */
  readonly reason: string;
  /** How many times this address has been banned (the growth counter). */
  readonly bans: number;
}

/** A snapshot for `berth ctl status` and the metrics. */
export interface DefenderStatus {
  readonly enabled: boolean;
  /** Addresses remembered (scored recently, banned, or with a recent ban). */
  readonly tracked: number;
  /** Addresses banned now. */
  readonly banned: number;
  /** Bans since start. */
  readonly bansTotal: number;
  /** Offences scored since start, by kind. */
  readonly offences: Readonly<Record<Offence, number>>;
  /** The current bans, longest first (at most `limit`). */
  readonly bans: readonly BanInfo[];
}

/** Slots the observation window is divided into. */
const SLOTS = 10;

interface Slot {
  start: number;
  score: number;
}

interface Entry {
  slots: Slot[];
  bannedUntil: number;
  /** Bans so far; the next one lasts banTime × banGrowth^bans. */
  bans: number;
  reason: string;
}

/** Default texts for the reason of a ban, by the offence that crossed the threshold. */
const REASONS: Readonly<Record<Offence, string>> = {
  login: "repeated failed logins",
  limit: "too many connections refused by limits",
  abuse: "protocol abuse",
};

/** "::ffff:1.2.3.4" and "1.2.3.4" are the same client; IPv6 compares in lower case. */
export function normalizeAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith("::ffff:") && lower.includes(".") ? lower.slice(7) : lower;
}

/** The wall clock at start less the monotonic clock then: steadyNow() reads milliseconds since the
 * epoch as they were at start, counted on by the monotonic clock. */
const EPOCH_AT_START = Date.now() - performance.now();

/** The defender's clock by default: the wall clock set back while the server runs (NTP, a restored
 * virtual machine) would make every ban and counted offence last as much longer, keeping clients
 * out long after their ban; set forward, it would end them at once. */
function steadyNow(): number {
  return EPOCH_AT_START + performance.now();
}

/** Builds the allow-list of `text` (already validated by the config loader). */
function allowList(text: string): BlockList | null {
  const cidrs = parseCidrList(text) ?? [];
  // None (the usual case): nothing to look up. A lookup in a BlockList makes a SocketAddress
  // each time, about a hundredth of a short session's main-thread instructions.
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const c of cidrs) list.addSubnet(c.network, c.prefix, c.family);
  return list;
}

/** Scores client addresses and bans those over the threshold. */
export class Defender implements LoginGuard {
  #settings: DefenderSettings;
  /** The trusted networks; null when there are none. */
  #allow: BlockList | null;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  #bansTotal = 0;
  readonly #offences: Record<Offence, number> = { login: 0, limit: 0, abuse: 0 };

  /** Called once for each new ban (the server closes the address's sessions). */
  onBan: ((ban: BanInfo) => void) | null = null;

  /** A defender with the given settings; `now` is the clock in ms (tests pass their own). */
  constructor(settings: DefenderSettings, now: () => number = steadyNow) {
    this.#settings = settings;
    this.#allow = allowList(settings.allow);
    this.#now = now;
  }

  /** Applies new settings (SIGHUP); scores and bans in effect are kept. */
  configure(settings: DefenderSettings): void {
    this.#settings = settings;
    this.#allow = allowList(settings.allow);
    this.#evict();
  }

  /** True when `address` is in a trusted network. */
  isAllowed(address: string): boolean {
    if (this.#allow === null) return false;
    const a = normalizeAddress(address);
    return this.#allow.check(a, a.includes(":") ? "ipv6" : "ipv4");
  }

  /** The ban in effect for `address`, or null. */
  banOf(address: string): BanInfo | null {
    if (!this.#settings.enabled || this.isAllowed(address)) return null;
    const key = normalizeAddress(address);
    const entry = this.#current(key);
    if (entry === undefined || entry.bannedUntil <= this.#now()) return null;
    // A banned address trying again is seen too: were it not marked so, the cap (maxEntries) would
    // forget the one that keeps knocking, and its ban, before addresses not seen since.
    this.#touch(key, entry);
    return this.#info(key, entry);
  }

  /** True while `address` is refused. */
  isBanned(address: string): boolean {
    return this.banOf(address) !== null;
  }

  /**
   * Adds the score of one offence to `address`; bans it when the window's total reaches the
   * threshold. Returns the new ban, or null. An address already banned is not scored again (its
   * refused connections would otherwise make the ban last for ever).
   */
  record(address: string, offence: Offence, reason: string = REASONS[offence]): BanInfo | null {
    const s = this.#settings;
    const score = offence === "login" ? s.scoreLoginFailure : offence === "limit" ? s.scoreLimit : s.scoreAbuse;
    if (!s.enabled || score <= 0 || this.isAllowed(address)) return null;
    const key = normalizeAddress(address);
    const now = this.#now();
    const entry = this.#current(key) ?? { slots: [], bannedUntil: 0, bans: 0, reason: "" };
    this.#touch(key, entry);
    if (entry.bannedUntil > now) return null;
    this.#offences[offence]++;
    addScore(entry, score, now, (s.observationTime * 1000) / SLOTS);
    if (windowScore(entry) < s.threshold) return null;
    return this.#ban(key, entry, reason, now);
  }

  /** Counts one failed login from `address`. */
  recordFailure(address: string): void {
    this.record(address, "login");
  }

  /** A good login changes nothing: the failures still count (one valid account must not be a way
   * to reset the count between guesses); they expire with the window. */
  recordSuccess(_address: string): void {
    // Intentionally empty.
  }

  /** The current score of `address` within the window (0 when unknown). */
  score(address: string): number {
    const entry = this.#current(normalizeAddress(address));
    return entry === undefined ? 0 : windowScore(entry);
  }

  /** Number of addresses remembered (expired ones are dropped first). */
  get size(): number {
    for (const key of [...this.#entries.keys()]) this.#current(key);
    return this.#entries.size;
  }

  /** A snapshot: counts and up to `limit` current bans. */
  status(limit = 50): DefenderStatus {
    const bans: BanInfo[] = [];
    for (const key of [...this.#entries.keys()]) {
      const entry = this.#current(key);
      if (entry !== undefined && entry.bannedUntil > this.#now() && !this.isAllowed(key)) bans.push(this.#info(key, entry));
    }
    bans.sort((a, b) => b.until - a.until);
    return {
      enabled: this.#settings.enabled,
      tracked: this.size,
      banned: this.#settings.enabled ? bans.length : 0,
      bansTotal: this.#bansTotal,
      offences: { ...this.#offences },
      bans: this.#settings.enabled ? bans.slice(0, limit) : [],
    };
  }

  #ban(key: string, entry: Entry, reason: string, now: number): BanInfo {
    const s = this.#settings;
    const seconds = Math.min(s.banTime * s.banGrowth ** entry.bans, s.banTimeMax);
    entry.bans++;
    entry.bannedUntil = now + seconds * 1000;
    entry.reason = reason;
    entry.slots = [];
    this.#bansTotal++;
    const info = this.#info(key, entry);
    this.onBan?.(info);
    return info;
  }

  #info(key: string, entry: Entry): BanInfo {
    const remaining = Math.max(1, Math.ceil((entry.bannedUntil - this.#now()) / 1000));
    return { address: key, until: entry.bannedUntil, remaining, reason: entry.reason, bans: entry.bans };
  }

  /** The entry of `key` with expired slots dropped; forgets it when nothing about it matters any more. */
  #current(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    const windowMs = this.#settings.observationTime * 1000;
    entry.slots = entry.slots.filter((slot) => slot.start + windowMs > now);
    // The growth counter is remembered for banTimeMax after the last ban ended.
    const remembered = entry.bans > 0 && now - entry.bannedUntil < this.#settings.banTimeMax * 1000;
    if (entry.slots.length === 0 && entry.bannedUntil <= now && !remembered) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Marks `key` most recently used and enforces the cap. */
  #touch(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#evict();
  }

  /** Forgets the least recently used addresses beyond maxEntries. */
  #evict(): void {
    const cap = Math.max(1, this.#settings.maxEntries);
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= cap) return;
      this.#entries.delete(key);
    }
  }
}

/** Adds `score` to the newest slot, or opens a new one when that slot is `slotMs` old. */
function addScore(entry: Entry, score: number, now: number, slotMs: number): void {
  const last = entry.slots[entry.slots.length - 1];
  if (last !== undefined && now - last.start < slotMs) last.score += score;
  else entry.slots.push({ start: now, score });
  // Slots are opened at most every slotMs, so the window never holds more than SLOTS + 1 of them.
  if (entry.slots.length > SLOTS + 1) entry.slots.shift();
}

function windowScore(entry: Entry): number {
  let sum = 0;
  for (const slot of entry.slots) sum += slot.score;
  return sum;
}
