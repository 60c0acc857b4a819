/*
 * The descriptor calls of the small-file path, made on the calling thread (src/fs/sysio.ts):
 *
 *   ioOpen(path, flags, mode) -> fd, or -errno     open(2), with O_CLOEXEC as libuv adds it
 *   ioRead(fd, buffer, offset, length) -> bytes read, or -errno           read(2)
 *   ioWrite(fd, buffer, offset, length, position) -> bytes written, or -errno
 *                                                  pwrite(2) at position, write(2) when it is -1
 *   ioClose(fd) -> 0, or -errno                    close(2)
 *   ioFstat(fd, out) -> 0, or -errno               fstat(2); out (a Float64Array of 2) gets the
 *                                                  mode and the size
 *   ioWriteText(fd, text) -> bytes left unwritten (0: all went), or -errno (nothing went)
 *                                                  send(2) of the text's UTF-8 form, for replies
 *                                                  on the control connection (see below)
 *
 * Node's fs.openSync, readSync, writeSync and closeSync make the same system calls, but each also
 * looks a tracing category up by name twice (a string comparison against every category Node has
 * registered), sets up a request for the synchronous call, validates its arguments in JavaScript and,
 * on a failure, builds an exception: about 2,500 instructions on top of the call, eight times per
 * small upload. These return the result as a number instead, and the caller decides what an error
 * is (EAGAIN on a socket read is no error at all).
 *
 * Built by native/build.mjs at install; berth works without it (src/native.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "berth.h"

/* Bytes of a path with its NUL (PATH_MAX on Linux); longer ones are ENAMETOOLONG, as the kernel says. */
#define PATH_BYTES 4096

/* buffer[offset, offset + length) of the typed array or Buffer `v`; false, with a TypeError saying
 * `usage`, when `v` is not one or the range does not fit. */
static bool byte_range(napi_env env, napi_value v, napi_value off, napi_value len, const char *usage, char **at, size_t *n) {
  void *data;
  size_t size;
  int32_t o, l;
  if (napi_get_buffer_info(env, v, &data, &size) != napi_ok || napi_get_value_int32(env, off, &o) != napi_ok ||
      napi_get_value_int32(env, len, &l) != napi_ok || o < 0 || l < 0 || (size_t)o + (size_t)l > size) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  *at = (char *)data + o;
  *n = (size_t)l;
  return true;
}

napi_value berth_io_open(napi_env env, napi_callback_info info) {
  static const char usage[] = "ioOpen(path, flags, mode)";
  size_t argc = 3;
  napi_value argv[3];
  char path[PATH_BYTES];
  size_t len;
  int32_t flags, mode;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &flags) != napi_ok || napi_get_value_int32(env, argv[2], &mode) != napi_ok || mode < 0) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  // Measured before it is copied: a copy cut to the buffer ends at a whole character, so a longer
  // path could come out shorter than the buffer and name another file. The kernel takes up to
  // PATH_BYTES with its NUL (4095 bytes of path); a longer one is ENAMETOOLONG, as it says.
  if (len >= sizeof path) return berth_number(env, -ENAMETOOLONG);
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  // A NUL inside the string would end the path early (Node refuses such a path too).
  if (strlen(path) != len) return berth_number(env, -EINVAL);
  int fd;
  do fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  return berth_number(env, fd < 0 ? -errno : fd);
}

napi_value berth_io_read(napi_env env, napi_callback_info info) {
  static const char usage[] = "ioRead(fd, buffer, offset, length)";
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd;
  char *at;
  size_t n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!byte_range(env, argv[1], argv[2], argv[3], usage, &at, &n)) return NULL;
  ssize_t r;
  do r = read(fd, at, n);
  while (r < 0 && errno == EINTR);
  return berth_number(env, r < 0 ? -errno : (double)r);
}

napi_value berth_io_write(napi_env env, napi_callback_info info) {
  static const char usage[] = "ioWrite(fd, buffer, offset, length, position)";
  size_t argc = 5;
  napi_value argv[5];
  int32_t fd;
  double position;
  char *at;
  size_t n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_double(env, argv[4], &position) != napi_ok || !(position >= -1) || position > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!byte_range(env, argv[1], argv[2], argv[3], usage, &at, &n)) return NULL;
  ssize_t r;
  do r = position < 0 ? write(fd, at, n) : pwrite(fd, at, n, (off_t)position);
  while (r < 0 && errno == EINTR);
  return berth_number(env, r < 0 ? -errno : (double)r);
}

napi_value berth_io_close(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "ioClose(fd)", &fd)) return NULL;
  // Not retried on EINTR: on Linux the descriptor is gone whatever close() returns. As in libuv
  // (and so Node's closeSync), EINTR and EINPROGRESS are no failure: the descriptor is closed.
  if (close(fd) == 0 || errno == EINTR || errno == EINPROGRESS) return berth_number(env, 0);
  return berth_number(env, -errno);
}

napi_value berth_io_fstat(napi_env env, napi_callback_info info) {
  int32_t fd;
  void *data;
  if (!berth_fd_and_array(env, info, "ioFstat(fd, Float64Array(2))", napi_float64_array, 2, &fd, &data)) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) return berth_number(env, -errno);
  double *out = data;
  out[0] = (double)st.st_mode;
  out[1] = (double)st.st_size;
  return berth_number(env, 0);
}

/* The longest reply ioWriteText takes, in UTF-16 code units (src/fs/sysio.ts says the same
 * number): at most 3 bytes of UTF-8 each. The buffer below has room for that, the NUL that
 * Node-API adds and one byte more, so that a copy which fills it can only be a longer text cut. */
#define TEXT_UNITS 1365

napi_value berth_io_write_text(napi_env env, napi_callback_info info) {
  static const char usage[] = "ioWriteText(fd, text)";
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  char text[TEXT_UNITS * 3 + 2];
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], text, sizeof text, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  // A copy that filled the buffer may have been cut (Node-API stops at a whole character): nothing
  // is written, and the caller writes the text its own way.
  if (len >= sizeof text - 1) return berth_number(env, -E2BIG);
  size_t done = 0;
  while (done < len) {
    // send(2) with MSG_NOSIGNAL: a peer that has gone gives EPIPE here, never the signal.
    ssize_t r = send(fd, text + done, len - done, MSG_NOSIGNAL);
    if (r > 0) {
      done += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    // Nothing at all went: the error (EAGAIN included) is the caller's to handle. Part went: what
    // is left is the caller's to queue, and a failure shows itself there.
    if (done == 0) return berth_number(env, r < 0 ? -errno : -EIO);
    break;
  }
  return berth_number(env, (double)(len - done));
}
