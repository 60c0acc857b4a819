import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapFsError } from "../src/fs/errors.ts";
import { FtpError } from "../src/protocol/errors.ts";

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failed, open '/srv/real/home/x'`), {
    code,
    syscall: "open",
    path: "/srv/real/home/x",
  });
}

void describe("mapFsError", () => {
  const table: Array<[string, number, string]> = [
    ["ENOENT", 550, "No such file or directory"],
    ["EACCES", 550, "Permission denied"],
    ["EPERM", 550, "Permission denied"],
    ["EROFS", 550, "Read-only file system"],
    ["EEXIST", 550, "File exists"],
    ["ENOTDIR", 550, "Not a directory"],
    ["EISDIR", 550, "Is a directory"],
    ["ENOTEMPTY", 550, "Directory not empty"],
    ["ENOSPC", 452, "Insufficient storage space"],
    ["EDQUOT", 552, "Storage quota exceeded"],
    ["ENAMETOOLONG", 553, "File name not allowed"],
    ["ELOOP", 550, "Too many levels of symbolic links"],
    ["EMFILE", 451, "Local error: too many open files"],
    ["ENFILE", 451, "Local error: too many open files"],
    ["EIO", 451, "Local error in processing"],
  ];
  for (const [code, reply, message] of table) {
    void it(`${code} → ${reply} ${message}`, () => {
      const mapped = mapFsError(errno(code));
      assert.equal(mapped.code, reply);
      assert.equal(mapped.message, message);
      assert.ok(!mapped.message.includes("/srv"));
      assert.match(mapped.detail ?? "", new RegExp(`^${code} open /srv/real/home/x$`));
    });
  }

  void it("marks the server's own trouble for the operator: local errors, storage, a read-only file system", () => {
    for (const code of ["EROFS", "ENOSPC", "EMFILE", "EIO"]) assert.equal(mapFsError(errno(code)).serverSide, true, code);
    for (const code of ["ENOENT", "EACCES", "EEXIST", "EDQUOT", "ENAMETOOLONG"]) assert.equal(mapFsError(errno(code)).serverSide, false, code);
  });

  void it("passes an FtpError through unchanged", () => {
    const original = new FtpError(554, "Restart offset beyond end of file");
    assert.equal(mapFsError(original), original);
  });

  void it("maps anything else to 451", () => {
    for (const thing of [new Error("boom"), "text", null, 42]) {
      const mapped = mapFsError(thing);
      assert.equal(mapped.code, 451);
      assert.equal(mapped.message, "Local error in processing");
    }
  });
});
