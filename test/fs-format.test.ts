import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatListLine,
  formatMdtm,
  formatMlsxFacts,
  formatMlsxSelected,
  mlsxFormatter,
  mlstFeature,
  modeString,
  parseMfmtTime,
  selectMlsxFacts,
} from "../src/fs/format.ts";
import type { DirEntry, EntryStat } from "../src/fs/types.ts";

const NOW = new Date("2024-11-30T12:00:00Z");

function stat(over: Partial<EntryStat> = {}): EntryStat {
  return {
    type: "file",
    size: 1234,
    mtimeMs: Date.parse("2024-11-25T08:27:59Z"),
    mode: 0o644,
    nlink: 1,
    uid: 1000,
    gid: 1000,
    ...over,
  };
}

const entry = (name: string, over: Partial<EntryStat> = {}): DirEntry => ({ name, stat: stat(over) });

void describe("formatListLine", () => {
  void it("prints a recent file like vsftpd", () => {
    assert.equal(
      formatListLine(entry("name"), NOW),
      "-rw-r--r--    1 ftp      ftp          1234 Nov 25 08:27 name",
    );
  });

  void it("prints the year for files older than six months or in the future", () => {
    const old = entry("old.txt", { mtimeMs: Date.parse("2023-03-05T10:00:00Z") });
    assert.equal(formatListLine(old, NOW), "-rw-r--r--    1 ftp      ftp          1234 Mar  5  2023 old.txt");
    const future = entry("f", { mtimeMs: Date.parse("2025-01-02T00:00:00Z") });
    assert.ok(formatListLine(future, NOW).endsWith(" Jan  2  2025 f"));
  });

  void it("prints directories and links (no target)", () => {
    const dir = entry("sub dir", { type: "dir", mode: 0o755, nlink: 3, size: 4096 });
    assert.equal(formatListLine(dir, NOW), "drwxr-xr-x    3 ftp      ftp          4096 Nov 25 08:27 sub dir");
    const link = entry("ln", { type: "link", mode: 0o777, size: 11 });
    assert.equal(formatListLine(link, NOW), "lrwxrwxrwx    1 ftp      ftp            11 Nov 25 08:27 ln");
  });

  void it("right-aligns sizes of every length in 8 columns, longer ones in full", () => {
    for (const size of [0, 7, 42, 999, 4096, 65_536, 1_048_576, 12_345_678, 123_456_789, 2 ** 53 - 1]) {
      const line = formatListLine(entry("n", { size }), NOW);
      assert.equal(line, `-rw-r--r--    1 ftp      ftp      ${String(size).padStart(8)} Nov 25 08:27 n`);
    }
  });

  void it("keeps type, mode and link count apart for entries that share the rest", () => {
    // The part before the size is made once per (type, mode, link count) and reused.
    const lines = [
      entry("a", { mode: 0o755, nlink: 2 }),
      entry("b", { type: "dir", mode: 0o755, nlink: 2 }),
      entry("c", { mode: 0o755, nlink: 3 }),
      entry("d", { mode: 0o4755, nlink: 2 }),
      entry("e", { mode: 0o755, nlink: 70_000 }),
      entry("f", { mode: 0o755, nlink: 2 }),
    ].map((e) => formatListLine(e, NOW).slice(0, 29));
    assert.deepEqual(lines, [
      "-rwxr-xr-x    2 ftp      ftp ",
      "drwxr-xr-x    2 ftp      ftp ",
      "-rwxr-xr-x    3 ftp      ftp ",
      "-rwsr-xr-x    2 ftp      ftp ",
      "-rwxr-xr-x 70000 ftp      ftp",
      "-rwxr-xr-x    2 ftp      ftp ",
    ]);
  });

  void it("never lets a name break the line", () => {
    assert.match(formatListLine(entry("a\r\nb"), NOW), / a\?\?b$/);
  });

  void it("shows setuid, setgid and sticky bits", () => {
    assert.equal(modeString(stat({ mode: 0o4755 })), "-rwsr-xr-x");
    assert.equal(modeString(stat({ mode: 0o2644 })), "-rw-r-Sr--");
    assert.equal(modeString(stat({ type: "dir", mode: 0o1777 })), "drwxrwxrwt");
    assert.equal(modeString(stat({ type: "dir", mode: 0o1776 })), "drwxrwxrwT");
  });

  void it("shows FIFOs, sockets and devices by their ls -l letter, each line its own", () => {
    assert.equal(modeString(stat({ type: "other", mode: 0o010644 })), "prw-r--r--");
    assert.equal(modeString(stat({ type: "other", mode: 0o140755 })), "srwxr-xr-x");
    assert.equal(modeString(stat({ type: "other", mode: 0o020666 })), "crw-rw-rw-");
    assert.equal(modeString(stat({ type: "other", mode: 0o060660 })), "brw-rw----");
    const lines = [entry("p", { type: "other", mode: 0o010644 }), entry("s", { type: "other", mode: 0o140644 })].map((e) => formatListLine(e, NOW));
    assert.match(lines[0] ?? "", /^prw-r--r-- /);
    assert.match(lines[1] ?? "", /^srw-r--r-- /);
  });
});

void describe("MLSx facts (RFC 3659)", () => {
  void it("prints file facts in order, modify in UTC", () => {
    const line = formatMlsxFacts(entry("name"), { perm: "rawdf" });
    assert.equal(line, "type=file;size=1234;modify=20241125082759;perm=rawdf;unix.mode=0644; name");
  });

  void it("omits size for directories and supports cdir/pdir", () => {
    const dir = entry("d", { type: "dir", mode: 0o755 });
    assert.equal(formatMlsxFacts(dir, { perm: "el" }), "type=dir;modify=20241125082759;perm=el;unix.mode=0755; d");
    assert.match(formatMlsxFacts(dir, { perm: "el", typeOverride: "cdir" }), /^type=cdir;/);
    assert.match(formatMlsxFacts(dir, { perm: "el", typeOverride: "pdir" }), /^type=pdir;/);
  });

  void it("prints links and specials as OS.unix types", () => {
    assert.match(formatMlsxFacts(entry("l", { type: "link" }), { perm: "" }), /^type=OS\.unix=symlink;modify=/);
    assert.match(formatMlsxFacts(entry("p", { type: "other" }), { perm: "" }), /^type=OS\.unix=special;/);
  });

  void it("honours an OPTS MLST selection", () => {
    const facts = selectMlsxFacts("Size;MODIFY;bogus;");
    assert.deepEqual([...facts], ["size", "modify"]);
    assert.equal(formatMlsxSelected(entry("n"), facts, { perm: "r" }), "size=1234;modify=20241125082759; n");
    assert.equal(formatMlsxSelected(entry("n"), selectMlsxFacts(""), { perm: "r" }), " n");
    assert.equal(mlstFeature(facts), "type;size*;modify*;perm;unix.mode;");
  });

  void it("prints unix.mode with special bits", () => {
    assert.match(formatMlsxFacts(entry("x", { mode: 0o4755 }), { perm: "r" }), /unix\.mode=04755;/);
    assert.match(formatMlsxFacts(entry("x", { mode: 0o7 }), { perm: "r" }), /unix\.mode=0007;/);
  });

});

void describe("MDTM / MFMT times", () => {
  void it("formats in UTC", () => {
    assert.equal(formatMdtm(new Date("2001-02-03T04:05:06.789Z")), "20010203040506");
  });

  void it("parses valid times, with or without a fraction", () => {
    assert.equal(parseMfmtTime("20010203040506")?.toISOString(), "2001-02-03T04:05:06.000Z");
    assert.equal(parseMfmtTime("20010203040506.5")?.toISOString(), "2001-02-03T04:05:06.500Z");
    assert.equal(parseMfmtTime("20010203040506.123456")?.toISOString(), "2001-02-03T04:05:06.123Z");
    assert.equal(parseMfmtTime("20240229235959")?.toISOString(), "2024-02-29T23:59:59.000Z");
    assert.ok(parseMfmtTime("20161231235960"), "leap second");
  });

  void it("round-trips", () => {
    const d = new Date("2019-07-14T21:09:33Z");
    assert.equal(parseMfmtTime(formatMdtm(d))?.getTime(), d.getTime());
  });

  void it("rejects malformed or out-of-range values", () => {
    for (const bad of [
      "",
      "2001020304050",
      "200102030405066",
      "20011303040506",
      "20010003040506",
      "20010230040506",
      "20230229000000",
      "21000229000000",
      "20010203240506",
      "20010203046006",
      "20010203040561",
      "09990101000000",
      "20010203040506.",
      "2001-02-03 04:05",
      " 20010203040506",
      "20010203040506Z",
    ]) {
      assert.equal(parseMfmtTime(bad), null, bad);
    }
  });
});

void describe("mlsxFormatter", () => {
  void it("gives the same lines as formatMlsxSelected, for every selection, across shared and changing times and modes", () => {
    const t1 = Date.parse("2024-11-25T08:27:59Z");
    const t2 = Date.parse("2024-11-25T08:28:00.500Z");
    const entries: [DirEntry, { perm: string; typeOverride?: "cdir" | "pdir" }][] = [
      [entry("a", { mtimeMs: t1 }), { perm: "radfw" }],
      [entry("b", { mtimeMs: t1 }), { perm: "radfw" }],
      [entry("c", { mtimeMs: t2, mode: 0o600 }), { perm: "r" }],
      [entry("d", { type: "dir", mtimeMs: t2, mode: 0o755 }), { perm: "elcmp" }],
      [entry("e\r\nx", { type: "link", mtimeMs: t1, mode: 0o777 }), { perm: "" }],
      [entry("f", { type: "other", mtimeMs: t1, mode: 0o644 }), { perm: "" }],
      [entry(".", { type: "dir", mtimeMs: t1 }), { perm: "el", typeOverride: "cdir" }],
    ];
    for (const selection of ["type;size;modify;perm;unix.mode", "", "size;perm", "modify;unix.mode", "type"]) {
      const facts = selectMlsxFacts(selection);
      const format = mlsxFormatter(facts);
      for (const [e, opts] of entries) assert.equal(format(e, opts), formatMlsxSelected(e, facts, opts), `${selection}: ${e.name}`);
    }
  });
});
