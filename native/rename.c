/*
 * A rename that never replaces: renameat2(2) with RENAME_NOREPLACE, for users who may not
 * overwrite. The kernel checks that the new name is free and takes it in one step, so a file
 * another session creates there after berth looked is never replaced.
 *
 *   renameNoReplace(from, to) -> 0, or -errno
 *     -EEXIST when something is at `to`; -ENOSYS (kernel before 3.15, or a seccomp filter),
 *     -EPERM (a seccomp filter, or a rename refused) or -EINVAL (a filesystem without the flag):
 *     the caller falls back to its own check and a plain rename, which fails again where the
 *     kernel refuses the rename itself.
 *   renameNoReplaceAsync(from, to) -> Promise of the same
 *     The same call on libuv's thread pool, for while the disk is slow (src/fs/quick.ts sends
 *     every file call there then): on the main thread it would hold up every session meanwhile.
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

/* A string argument copied into `stack`, or into memory of its own where it is longer or `stack`
 * is NULL (*out then differs from stack; the caller frees it). False with a TypeError when it is
 * not a string; *out is NULL when it holds a NUL or memory ran out (the call then says -EINVAL or
 * -ENOMEM). */
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

/* renameat2 of `from` to `to` with RENAME_NOREPLACE: 0, or -errno. */
static int rename_now(const char *from, const char *to) {
  long r;
  do r = syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : 0;
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
  if (rc == 0) rc = rename_now(from, to);
  if (from != NULL && from != stack_from) free(from);
  if (to != NULL && to != stack_to) free(to);
  return berth_number(env, rc);
}

/* One renameNoReplaceAsync: its paths (copies of its own), its promise and its result. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *from;
  char *to;
  int rc;
} rename_job_t;

static void rename_job_free(rename_job_t *j) {
  free(j->from);
  free(j->to);
  free(j);
}

/* On a thread of the pool. */
static void rename_execute(napi_env env, void *data) {
  (void)env;
  rename_job_t *j = data;
  j->rc = rename_now(j->from, j->to);
}

/* On the main thread: the promise gets the result (-ECANCELED where the work never ran). */
static void rename_complete(napi_env env, napi_status status, void *data) {
  rename_job_t *j = data;
  napi_resolve_deferred(env, j->deferred, berth_number(env, status == napi_ok ? j->rc : -ECANCELED));
  napi_delete_async_work(env, j->work);
  rename_job_free(j);
}

napi_value berth_rename_no_replace_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  int err_from = 0, err_to = 0;
  rename_job_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    napi_throw_error(env, NULL, "renameNoReplaceAsync: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      !path_argument(env, argv[0], NULL, 0, &j->from, &err_from) ||
      !path_argument(env, argv[1], NULL, 0, &j->to, &err_to)) {
    rename_job_free(j);
    napi_throw_type_error(env, NULL, "renameNoReplaceAsync(from, to)");
    return NULL;
  }
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok) {
    rename_job_free(j);
    return NULL;
  }
  int rc = err_from != 0 ? err_from : err_to;
  if (rc == 0 && (napi_create_string_utf8(env, "berth:renameNoReplace", NAPI_AUTO_LENGTH, &name) != napi_ok ||
                  napi_create_async_work(env, NULL, name, rename_execute, rename_complete, j, &j->work) != napi_ok)) {
    rc = -ENOMEM;
  } else if (rc == 0 && napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_async_work(env, j->work);
    rc = -ENOMEM;
  }
  if (rc != 0) {
    /* Nothing to run: the promise is settled at once. */
    napi_resolve_deferred(env, j->deferred, berth_number(env, rc));
    rename_job_free(j);
  }
  return promise;
}
