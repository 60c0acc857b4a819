/**
 * The one source of truth for berth's configuration: its shape, its defaults and the rules each key
 * must satisfy. `load.ts` merges file and environment over these defaults, validates, and freezes.
 * SPEC.md names the keys the outside world relies on; the rest are berth's own extensions.
 */
import { isIP } from "node:net";

/** TLS modes of SPEC.md: which listeners speak TLS and whether AUTH TLS is offered. */
export type TlsMode = "off" | "explicit" | "implicit" | "both";

/** pino's levels, plus "silent". */
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** The validated, frozen configuration. Durations are seconds unless the key says otherwise. */
export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly passive: {
    /** Inclusive range "MIN-MAX" (or one port "N"). */
    readonly ports: string;
    /** What PASV announces to clients from public addresses: IPv4 address or hostname; "" = local address. */
    readonly address: string;
  };
  readonly active: { readonly enabled: boolean };
  readonly transfer: {
    /** Plain binary downloads by sendfile(2) where the addon is built (src/native.ts). */
    readonly sendfile: boolean;
    /** Large plain binary uploads read and written by a thread of the addon (native/receive.c). */
    readonly uploadThreads: boolean;
    /** HASH and the X* checksum commands (protocol/commands/digest.ts). */
    readonly checksums: boolean;
    /** An upload's file and its directory are flushed to the disk (fsync) before its 226. */
    readonly fsync: boolean;
  };
  readonly tls: {
    readonly mode: TlsMode;
    readonly cert: string;
    readonly key: string;
    readonly implicitPort: number;
    readonly require: boolean;
    /** A protected data connection must resume its control connection's TLS session. */
    readonly requireSessionReuse: boolean;
  };
  readonly users: {
    readonly file: string;
    /** bcrypt cost for new hashes. */
    readonly bcryptCost: number;
    /** Seconds a verified login is remembered (keyed by an HMAC, never the password); 0 = off. */
    readonly loginCacheSeconds: number;
  };
  readonly storage: {
    readonly root: string;
    /** Comma-separated glob patterns of names left out of listings and "not found" when addressed. */
    readonly hide: string;
    /** Comma-separated glob patterns of names that cannot be uploaded, created, renamed to or downloaded. */
    readonly deny: string;
    /** Octal umask for files and directories berth creates, whatever the process umask is. */
    readonly umask: string;
  };
  readonly anonymous: {
    /** USER anonymous or ftp, any password, logs in to `root` (RFC 1635). */
    readonly enabled: boolean;
    /** The anonymous home: absolute, or relative to storage.root. */
    readonly root: string;
    /** Comma-separated permissions of anonymous sessions (see PERMS). */
    readonly perms: string;
    /** Per-directory overrides, "/incoming=upload;/pub=list,download"; "" = none. */
    readonly dirPerms: string;
  };
  readonly log: {
    readonly level: LogLevel;
    readonly pretty: "auto" | "always" | "never";
    /** Path of a transfer log in xferlog format; "" = off. */
    readonly xferlog: string;
  };
  readonly limits: {
    /** Bytes in one command line (with its CRLF); a longer line gets 500 and is discarded. */
    readonly maxLineLength: number;
    /** Seconds a connection may take to log in. */
    readonly loginTimeout: number;
    /** Seconds without a command (and no transfer) before 421. */
    readonly idleTimeout: number;
    /** Seconds to wait for a data connection (passive accept or active connect). */
    readonly dataTimeout: number;
    /** Seconds a transfer may go without moving a byte before it is aborted; also how long (at most
     * 10) a finished transfer's data connection waits for the client to close it. */
    readonly stalledTimeout: number;
    /** Failed logins on one connection before it is closed. */
    readonly maxLoginFailures: number;
    /** Seconds before each 530 for a failed login (the same for unknown users and bad passwords). */
    readonly failedLoginDelay: number;
    /** Sessions at once, in total. */
    readonly maxSessions: number;
    /** Sessions at once from one address. */
    readonly maxSessionsPerAddress: number;
    /** Logged-in sessions at once per user; 0 = unlimited (a user's own limits.maxSessions wins). */
    readonly maxSessionsPerUser: number;
    /** Commands per second one session may sustain (token bucket refill); 0 = unlimited. */
    readonly commandRate: number;
    /** Commands one session may send at once before it is slowed down (token bucket size). */
    readonly commandBurst: number;
    /** Seconds running transfers may go on after SIGTERM/SIGINT before the process exits. */
    readonly shutdownGrace: number;
  };
  readonly defender: {
    /** Score offences per address and ban addresses over the threshold. */
    readonly enabled: boolean;
    /** Score within `observationTime` at which an address is banned. */
    readonly threshold: number;
    /** Seconds an offence counts towards the threshold. */
    readonly observationTime: number;
    /** Seconds of a first ban. */
    readonly banTime: number;
    /** Longest ban, in seconds, however often an address offends again. */
    readonly banTimeMax: number;
    /** Each repeated ban lasts this many times the previous one (1 = always banTime). */
    readonly banGrowth: number;
    /** Score of one failed login. */
    readonly scoreLoginFailure: number;
    /** Score of one connection or login refused by a limit (sessions, command rate). */
    readonly scoreLimit: number;
    /** Score of one piece of protocol abuse (overlong line, bad-command flood, unused PASV, TLS failure). */
    readonly scoreAbuse: number;
    /** Trusted networks never scored or banned: comma-separated CIDRs or addresses (IPv4, IPv6). */
    readonly allow: string;
    /** Most addresses remembered at once (least recently seen forgotten first). */
    readonly maxEntries: number;
  };
  readonly server: {
    /** Text of the 220 greeting. */
    readonly banner: string;
  };
  readonly metrics: {
    /** "host:port" of a Prometheus endpoint (GET /metrics); "" = off. */
    readonly listen: string;
  };
  readonly admin: {
    /** Unix socket for `berth ctl` (newline-delimited JSON, mode 0660); "" = off. */
    readonly socket: string;
  };
  /** Storage quotas per user (issue "Abuse resistance" part 4); a user's own limit > 0 wins. */
  readonly quota: {
    /** Bytes a user may store in their home; 0 = unlimited. */
    readonly bytes: number;
    /** Regular files a user may store in their home; 0 = unlimited. */
    readonly files: number;
    /** Seconds after which a user's counted usage is recounted at their next login; 0 = at every login. */
    readonly rescanAfter: number;
  };
  /** Transfer rates in bytes per second, 0 = unlimited (issue "Abuse resistance" part 5). Up = uploads
   * (client to server), down = downloads. A transfer obeys every level at once: the slowest wins. */
  readonly bandwidth: {
    /** Each single transfer. */
    readonly transferUp: number;
    readonly transferDown: number;
    /** All transfers of one user together (a user's own bandwidthUp/Down > 0 wins). */
    readonly userUp: number;
    readonly userDown: number;
    /** All transfers from one client IP address together. */
    readonly addressUp: number;
    readonly addressDown: number;
    /** All transfers of the server together. */
    readonly globalUp: number;
    readonly globalDown: number;
  };
}

/** Defaults: what `config/berth.yaml` documents, and what an empty file means. */
export const DEFAULTS: Config = {
  listen: { host: "::", port: 2121 },
  passive: { ports: "50000-50100", address: "" },
  active: { enabled: true },
  transfer: { sendfile: true, uploadThreads: true, checksums: true, fsync: false },
  tls: {
    mode: "off",
    cert: "",
    key: "",
    implicitPort: 990,
    require: false,
    requireSessionReuse: true,
  },
  users: { file: "users/users.json", bcryptCost: 10, loginCacheSeconds: 60 },
  storage: { root: "data", hide: "", deny: "", umask: "022" },
  anonymous: { enabled: false, root: "anonymous", perms: "list,download", dirPerms: "" },
  log: { level: "info", pretty: "auto", xferlog: "" },
  limits: {
    maxLineLength: 4096,
    loginTimeout: 60,
    idleTimeout: 300,
    dataTimeout: 30,
    stalledTimeout: 300,
    maxLoginFailures: 3,
    failedLoginDelay: 1,
    maxSessions: 10000,
    maxSessionsPerAddress: 10000,
    maxSessionsPerUser: 0,
    commandRate: 1000,
    commandBurst: 1000,
    shutdownGrace: 8,
  },
  defender: {
    enabled: true,
    threshold: 100,
    observationTime: 300,
    banTime: 300,
    banTimeMax: 86400,
    banGrowth: 2,
    scoreLoginFailure: 10,
    scoreLimit: 5,
    scoreAbuse: 20,
    allow: "",
    maxEntries: 100000,
  },
  server: { banner: "berth FTP server ready" },
  metrics: { listen: "" },
  admin: { socket: "" },
  quota: { bytes: 0, files: 0, rescanAfter: 600 },
  bandwidth: {
    transferUp: 0,
    transferDown: 0,
    userUp: 0,
    userDown: 0,
    addressUp: 0,
    addressDown: 0,
    globalUp: 0,
    globalDown: 0,
  },
};

/** Parses an octal umask "022" / "0077" (0..0777); null when malformed. */
export function parseUmask(text: string): number | null {
  if (!/^0?[0-7]{1,3}$/.test(text.trim())) return null;
  return parseInt(text.trim(), 8);
}

/** An inclusive port range parsed from `passive.ports`. */
export interface PortRange {
  readonly min: number;
  readonly max: number;
}

/** Parses "MIN-MAX" or "N" into a range of valid TCP ports; null when malformed or out of 1..65535. */
export function parsePortRange(text: string): PortRange | null {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  if (!m) return null;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min < 1 || max > 65535 || min > max) return null;
  return { min, max };
}

/** One label of a host name: letters, digits, "-" and "_" (container and compose names have it). */
const HOST_LABEL = /^[A-Za-z0-9_-]{1,63}$/;

/**
 * True for a valid IPv4 or IPv6 address, or a host name that could resolve: dot-separated labels
 * (a trailing dot allowed), at most 253 characters. Digits and dots alone must be an IPv4 address
 * ("999.1.1.1" is a mistake, not a name), and anything with ":" an IPv6 one (without brackets).
 */
export function validHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  if (host.includes(":") || /^[\d.]+$/.test(host)) return false;
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  return name.length > 0 && name.length <= 253 && name.split(".").every((label) => HOST_LABEL.test(label));
}

/** Splits "host:port" / "[v6]:port" / "port"; null when malformed. */
export function parseListen(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** One network of an allow-list: an address family, the network address and its prefix length. */
export interface Cidr {
  readonly family: "ipv4" | "ipv6";
  readonly network: string;
  readonly prefix: number;
}

/** Parses "10.0.0.0/8, ::1, 2001:db8::/32" (a bare address is a /32 or /128); null when malformed. */
export function parseCidrList(text: string): Cidr[] | null {
  const out: Cidr[] = [];
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(item);
    if (!m) return null;
    let network = m[1] ?? "";
    // An IPv4-mapped IPv6 network ("::ffff:10.0.0.0/104") means the IPv4 one (clients are unmapped).
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(network);
    let shift = 0;
    if (mapped) {
      network = mapped[1] ?? "";
      shift = 96;
    }
    const kind = isIP(network);
    if (kind === 0) return null;
    const max = kind === 4 ? 32 : 128;
    const prefix = m[2] === undefined ? max : Number(m[2]) - shift;
    if (prefix < 0 || prefix > max) return null;
    out.push({ family: kind === 4 ? "ipv4" : "ipv6", network, prefix });
  }
  return out;
}
