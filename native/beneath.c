/*
 * Opening a path below a directory held open, in one system call: openat2(2) with
 * RESOLVE_BENEATH (no ".." above the directory, no absolute path or link) and RESOLVE_NO_SYMLINKS
 * (no symlink anywhere on the way). A path that opens this way is the directory's path followed by
 * the names as given, with nothing the kernel substituted, so it is inside the jail by
 * construction; anything else fails (ELOOP for a link, EXDEV for an escape, ENOSYS where the
 * kernel predates openat2, EPERM where a seccomp filter refuses it) and the caller takes its
 * ordinary way (src/fs/beneath.ts).
 *
 *   openBeneath(dirFd, path, flags) -> fd (close-on-exec), or -errno
 *     `path` relative to `dirFd`; `flags` without O_CREAT (nothing is created this way).
 *   createBeneath(dirFd, path, flags, mode) -> fd (close-on-exec), or -errno
 *     A new file only: `flags` with O_CREAT and O_EXCL, so that a name already there, a symlink
 *     included, is EEXIST and is neither opened nor followed; `mode` as open(2) takes it.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "berth.h"

/* The kernel's struct open_how and flags (linux/openat2.h), here so that the build needs no
 * kernel headers; openat2 has the same number on every architecture (new system calls share one
 * table since Linux 5.1). */
struct berth_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
#define BERTH_RESOLVE_NO_MAGICLINKS 0x02
#define BERTH_RESOLVE_NO_SYMLINKS 0x04
#define BERTH_RESOLVE_BENEATH 0x08
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* Both calls: `create` says which, and what the arguments must be. */
static napi_value beneath(napi_env env, napi_callback_info info, bool create) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t dir = -1, flags = 0, mode = 0;
  char stack[512];
  char *path = stack;
  size_t len = 0;
  bool ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= (create ? 4u : 3u) &&
            napi_get_value_int32(env, argv[0], &dir) == napi_ok && napi_get_value_int32(env, argv[2], &flags) == napi_ok &&
            napi_get_value_string_utf8(env, argv[1], NULL, 0, &len) == napi_ok && dir >= 0;
  if (ok && create) {
    double m = -1; /* read whole: an int32 read would wrap 2^32 + 0644 to 0644 */
    ok = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) && napi_get_value_double(env, argv[3], &m) == napi_ok &&
         m >= 0 && m <= 07777 && m == (double)(int32_t)m;
    mode = ok ? (int32_t)m : 0;
  } else if (ok) {
    ok = (flags & O_CREAT) == 0;
  }
  if (!ok) {
    napi_throw_type_error(env, NULL,
                          create ? "createBeneath(dirFd, path, flags with O_CREAT and O_EXCL, mode)"
                                 : "openBeneath(dirFd, path, flags without O_CREAT)");
    return NULL;
  }
  if (len + 1 > sizeof stack) {
    path = malloc(len + 1);
    if (path == NULL) return berth_number(env, -ENOMEM);
  }
  napi_get_value_string_utf8(env, argv[1], path, len + 1, &len);
  int rc;
  if (strlen(path) != len) {
    rc = -EINVAL; /* a NUL inside the name */
  } else {
    struct berth_open_how how = {
      .flags = (uint64_t)(uint32_t)flags | O_CLOEXEC,
      .mode = create ? (uint64_t)mode : 0,
      .resolve = BERTH_RESOLVE_BENEATH | BERTH_RESOLVE_NO_SYMLINKS | BERTH_RESOLVE_NO_MAGICLINKS,
    };
    long fd;
    do fd = syscall(SYS_openat2, dir, path, &how, sizeof how);
    while (fd < 0 && errno == EINTR);
    rc = fd < 0 ? -errno : (int)fd;
  }
  if (path != stack) free(path);
  return berth_number(env, rc);
}

napi_value berth_open_beneath(napi_env env, napi_callback_info info) {
  return beneath(env, info, false);
}

napi_value berth_create_beneath(napi_env env, napi_callback_info info) {
  return beneath(env, info, true);
}
