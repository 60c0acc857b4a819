/**
 * The one command table (DESIGN convention 1): verb → handler and metadata. The dispatcher's
 * guards, FEAT, HELP and docs/rfc-compliance.md are all derived from it.
 */
import type { Perm } from "../auth/types.ts";
import type { VirtualPath } from "../fs/types.ts";
import type { Session } from "./session.ts";

/** What a command handler receives: the session, the argument text and the verb as sent. */
export type Handler = (session: Session, arg: string, verb: string) => Promise<void> | void;

/** One command's entry in the registry. */
export interface CommandSpec {
  /** The verb, upper case. */
  readonly verb: string;
  /** Does the work and writes the reply (or throws an FtpError that becomes the reply). */
  readonly handler: Handler;
  /** 530 unless a user is logged in. */
  readonly needsLogin: boolean;
  /** Argument shape; a mismatch is 501 before the handler runs. */
  readonly arg: "required" | "optional" | "none";
  /** The permission the command needs where it acts; the dispatcher checks it (550 when lacking). */
  readonly perm?: PermRule;
  /** Uses the data connection (consumes REST and the PASV/PORT set-up). */
  readonly opensData?: boolean;
  /** Computes a checksum of a file (HASH, XCRC…), which ABOR stops as it stops a transfer. */
  readonly checksum?: boolean;
  /** May run while a transfer or a checksum is in progress instead of waiting its turn (ABOR,
   * STAT, QUIT). */
  readonly bypassesQueue?: boolean;
  /** Allowed before AUTH TLS when tls.require is on. */
  readonly beforeTls?: boolean;
  /** The argument is a secret: never logged. */
  readonly secretArg?: boolean;
  /** What the command's log line shows of its argument (default: all of it), where a part of it
   * may be a secret. */
  readonly loggedArg?: (arg: string) => string;
  /** FEAT lines this command contributes (without the leading space), given the session. */
  readonly feat?: (session: Session) => readonly string[];
  /** Usage, for HELP. */
  readonly help: string;
  /** Where the command is defined, for docs/rfc-compliance.md. */
  readonly rfc: string;
  /** Another verb this one is an alias of (XPWD → PWD), for the docs. */
  readonly aliasOf?: string;
}

/**
 * What a command needs to be allowed (issue "Abuse resistance", permissions), checked by the
 * dispatcher on the resolved path, so per-directory overrides apply (see auth/perms.ts).
 */
export interface PermRule {
  /** Any one of these suffices; [] = the path only has to be visible (not hidden). */
  readonly need: readonly Perm[];
  /** "entry" (default): the permissions of the directory holding the path; "dir": of the path. */
  readonly scope?: "entry" | "dir";
  /** Creates an entry there: a hidden or denied name is refused as "name not allowed". */
  readonly creates?: boolean;
  /** Reads or creates the entry itself: a denied name is refused. */
  readonly named?: boolean;
  /** Also needs overwrite when something already exists at the path. */
  readonly overwrite?: boolean;
  /** Acts on what a link at the path leads to (its bytes or its time), not on the link itself: the
   * permissions of the directory that holds the link's target apply. */
  readonly follows?: boolean;
  /** The path acted on; null = nothing to check (the handler answers). Default: the argument. */
  readonly path?: (session: Session, arg: string) => VirtualPath | null;
  /** Another rule for another form of the argument (MDTM with a time sets it): `rule` where
   * `matches(session, arg)`; `what` names the form in the RFC table. */
  readonly form?: {
    readonly matches: (session: Session, arg: string) => boolean | Promise<boolean>;
    readonly rule: PermRule;
    readonly what: string;
  };
}

/** The rfc-table words for a rule: "upload (+overwrite if it exists)", "list or download", "visible". */
export function describePerm(rule: PermRule): string {
  const need = rule.need.length === 0 ? "visible" : rule.need.join(" or ");
  const text = rule.overwrite ? `${need} (+overwrite if it exists)` : need;
  return rule.form ? `${text}; ${rule.form.what}: ${describePerm(rule.form.rule)}` : text;
}

/** A verb → spec map built from command families. */
export class Registry {
  private readonly map = new Map<string, CommandSpec>();

  /** Adds specs; a duplicate verb is a programming error. */
  add(specs: readonly CommandSpec[]): this {
    for (const s of specs) {
      if (this.map.has(s.verb)) throw new Error(`duplicate verb ${s.verb}`);
      this.map.set(s.verb, uniformSpec(s));
    }
    return this;
  }

  /** The spec of a verb (upper case), if any. */
  get(verb: string): CommandSpec | undefined {
    return this.map.get(verb);
  }

  /** All specs in verb order. */
  all(): CommandSpec[] {
    return [...this.map.values()].sort((a, b) => a.verb.localeCompare(b.verb));
  }

  /** FEAT lines for a session, sorted, each once. */
  features(session: Session): string[] {
    const set = new Set<string>();
    for (const s of this.map.values()) for (const f of s.feat?.(session) ?? []) set.add(f);
    return [...set].sort();
  }
}

/**
 * `s` with every key present, in one order (undefined where the command has none), and its rules
 * alike. The specs are written in many shapes (spreads of shared parts, optional keys), which made
 * the dispatcher's reads of them megamorphic: V8 then looks each one up in a cache that misses
 * often, and a miss is a runtime call, several per command. Stored this way every spec has one
 * hidden class and every rule another.
 */
function uniformSpec(s: CommandSpec): CommandSpec {
  const u = {
    verb: s.verb,
    handler: s.handler,
    needsLogin: s.needsLogin,
    arg: s.arg,
    perm: s.perm === undefined ? undefined : uniformRule(s.perm),
    opensData: s.opensData,
    checksum: s.checksum,
    bypassesQueue: s.bypassesQueue,
    beforeTls: s.beforeTls,
    secretArg: s.secretArg,
    loggedArg: s.loggedArg,
    feat: s.feat,
    help: s.help,
    rfc: s.rfc,
    aliasOf: s.aliasOf,
  };
  checkKept(s, u, `spec of ${s.verb}`);
  return u as CommandSpec;
}

function uniformRule(r: PermRule): PermRule {
  const u = {
    need: r.need,
    scope: r.scope,
    creates: r.creates,
    named: r.named,
    overwrite: r.overwrite,
    follows: r.follows,
    path: r.path,
    form: r.form === undefined ? undefined : { matches: r.form.matches, rule: uniformRule(r.form.rule), what: r.form.what },
  };
  checkKept(r, u, "rule");
  return u as PermRule;
}

/** A key of `from` that the uniform copy `to` left out is a programming error (a key added to
 * CommandSpec or PermRule and not to the copies above): it fails at start, in every test. */
function checkKept(from: object, to: object, what: string): void {
  for (const k of Object.keys(from)) if (!(k in to)) throw new Error(`registry: ${what}: key ${k} not kept`);
}

/** Builds an alias spec (XPWD for PWD and the like: RFC 775 names some clients still send). */
export function alias(verb: string, of: CommandSpec): CommandSpec {
  const { feat: _feat, ...rest } = of;
  return { ...rest, verb, aliasOf: of.verb, help: `${verb}: same as ${of.verb}`, rfc: "RFC 775" };
}
