/*
 * A rename that never replaces: renameat2(2) with RENAME_NOREPLACE, for users who may not
 * overwrite. The kernel checks that the new name is free and takes it in one step, so a file
 * another session creates there after berth looked is never replaced.
 *
 *   renameNoReplace(from, to) -> 0, or -errno
 *     -EEXIST when something is at `to`; -ENOSYS (kernel before 3.15, or a seccomp filter) or
 *     -EINVAL (a filesystem without the flag) when the caller must fall back to its own check.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "berth.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* A string argument copied into `stack`, or into memory of its own where it is longer (*out then
 * differs from stack; the caller frees it). False with a TypeError when it is not a string; *out
 * is NULL when it holds a NUL or memory ran out (the call then says -EINVAL or -ENOMEM). */
static bool path_argument(napi_env env, napi_value v, char *stack, size_t size, char **out, int *err) {
  size_t len = 0;
  *out = NULL;
  *err = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
  char *p = len + 1 > size ? malloc(len + 1) : stack;
  if (p == NULL) {
    *err = -ENOMEM;
    return true;
  }
  napi_get_value_string_utf8(env, v, p, len + 1, &len);
  if (strlen(p) != len) {
    if (p != stack) free(p);
    *err = -EINVAL; /* a NUL inside the path */
    return true;
  }
  *out = p;
  return true;
}

napi_value berth_rename_no_replace(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char stack_from[512], stack_to[512];
  char *from = NULL, *to = NULL;
  int err_from = 0, err_to = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      !path_argument(env, argv[0], stack_from, sizeof stack_from, &from, &err_from) ||
      !path_argument(env, argv[1], stack_to, sizeof stack_to, &to, &err_to)) {
    if (from != NULL && from != stack_from) free(from);
    napi_throw_type_error(env, NULL, "renameNoReplace(from, to)");
    return NULL;
  }
  int rc = err_from != 0 ? err_from : err_to;
  if (rc == 0) {
    long r;
    do r = syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
    while (r < 0 && errno == EINTR);
    rc = r < 0 ? -errno : 0;
  }
  if (from != NULL && from != stack_from) free(from);
  if (to != NULL && to != stack_to) free(to);
  return berth_number(env, rc);
}
