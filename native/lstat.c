/*
 * lstat of many entries of one directory for listings: the directory is opened once and each
 * entry is looked up relative to it with fstatat(2), so the kernel walks one name per entry instead
 * of the whole path, and no JS object or path string is made per entry.
 *
 *   lstatNames(dir, names, from, to, out, offset) -> entries found (>= 0), or -errno
 *     For names[from..to), writes FIELDS (7) numbers per entry into the Float64Array `out`, the
 *     first at out[offset]: ok (1, or 0 where the entry is missing or unreadable), mode, nlink,
 *     uid, gid, size, and mtimeMs (seconds * 1e3 + nanoseconds / 1e6, as Node computes it). An
 *     entry is never followed if it is a symbolic link. -errno when `dir` cannot be opened (nothing
 *     is written then). A name that is empty, longer than NAME_MAX, or holds '/' or NUL is not an
 *     entry name and is reported missing.
 *
 * Safe to call from any thread that has its own Node-API environment (the main thread and the stat
 * worker each load the addon).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "berth.h"

#define FIELDS 7
/* The longest path accepted for the directory itself. */
#define DIR_MAX 4096

static napi_value throw_usage(napi_env env) {
  napi_throw_type_error(env, NULL, "lstatNames(dir, names, from, to, out, offset)");
  return NULL;
}

napi_value berth_lstat_names(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) return throw_usage(env);

  char dir[DIR_MAX];
  size_t dir_len = 0;
  // Measured before it is copied: a copy cut to the buffer ends at a whole character, so a longer
  // path could come out shorter than the buffer and name another directory.
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &dir_len) != napi_ok) return throw_usage(env);
  if (dir_len == 0 || dir_len >= sizeof dir) return berth_number(env, -ENAMETOOLONG);
  if (napi_get_value_string_utf8(env, argv[0], dir, sizeof dir, &dir_len) != napi_ok) return throw_usage(env);
  if (strlen(dir) != dir_len) return berth_number(env, -ENAMETOOLONG);

  bool is_array = false;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) return throw_usage(env);
  uint32_t count = 0;
  napi_get_array_length(env, argv[1], &count);
  int64_t from = 0, to = 0, offset = 0;
  if (napi_get_value_int64(env, argv[2], &from) != napi_ok || napi_get_value_int64(env, argv[3], &to) != napi_ok ||
      napi_get_value_int64(env, argv[5], &offset) != napi_ok) {
    return throw_usage(env);
  }
  bool is_typed = false;
  if (napi_is_typedarray(env, argv[4], &is_typed) != napi_ok || !is_typed) return throw_usage(env);
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  napi_get_typedarray_info(env, argv[4], &type, &length, &data, NULL, NULL);
  if (type != napi_float64_array || from < 0 || to < from || to > (int64_t)count || offset < 0 ||
      (uint64_t)offset + (uint64_t)(to - from) * FIELDS > length) {
    return throw_usage(env);
  }
  double *out = (double *)data + offset;

  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return berth_number(env, -errno);
  int64_t found = 0;
  char name[NAME_MAX + 2];
  struct stat st;
  for (int64_t i = from; i < to; i++, out += FIELDS) {
    out[0] = 0;
    napi_value v;
    size_t len = 0;
    if (napi_get_element(env, argv[1], (uint32_t)i, &v) != napi_ok ||
        napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
      /* not a string: not an entry; a pending exception (a getter that threw) is cleared */
      napi_value ignored;
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &ignored);
      continue;
    }
    if (len == 0 || len > NAME_MAX || strlen(name) != len || memchr(name, '/', len) != NULL) continue;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    out[0] = 1;
    out[1] = (double)st.st_mode;
    out[2] = (double)st.st_nlink;
    out[3] = (double)st.st_uid;
    out[4] = (double)st.st_gid;
    out[5] = (double)st.st_size;
    out[6] = (double)st.st_mtim.tv_sec * 1e3 + (double)st.st_mtim.tv_nsec / 1e6;
    found++;
  }
  close(dfd);
  return berth_number(env, (double)found);
}
