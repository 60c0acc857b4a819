/*
 * sendfile(2) for plain downloads, so that a file's bytes go from the page cache to the socket
 * inside the kernel instead of through a buffer in user space.
 *
 *   sendNow(socketFd, fileFd, position, count) -> bytes sent (>= 0), or -errno
 *     One non-blocking sendfile on the calling thread; -EAGAIN when the socket buffer is full.
 *
 *   start(socketFd, fileFd, position, stallMs, progress, callback, mayBlock) -> job
 *     Sends from `position` to the end of the file on a thread of its own. Both descriptors are
 *     duplicated before start() returns, so the caller may close its own at any time: the job works
 *     on its copies and closes them when it ends. Bytes sent so far are stored in `progress` (a
 *     BigInt64Array of one element). Calls callback(errno, bytesSent, false) once, on the main thread;
 *     errno is 0 at the end of the file, ECANCELED after cancel(), ETIMEDOUT when the socket took
 *     nothing for stallMs.
 *     While it runs the socket is corked (TCP_CORK): only full segments go out, as from ProFTPD,
 *     and the tail goes when the job uncorks at its end. With TCP_NODELAY, which berth sets on every
 *     connection, each sendfile call used to end with a short segment, and the client woke for it.
 *     With `mayBlock` (the caller's event loop is not reading the socket), the socket is made
 *     blocking for the job, with a send timeout of POLL_SLICE_MS, so that the kernel waits for room
 *     inside sendfile instead of returning EAGAIN to a poll() loop; the flags are put back before
 *     the callback. The copy shares its flags with the caller's descriptor, so this is only safe
 *     while nothing else reads or writes the socket: a blocking read on the event loop's thread
 *     would stall it. Otherwise the job waits with poll() while the socket buffer is full.
 *
 *   cancel(job) (job.c)
 *     Ends the job soon: the socket is shut down, which wakes a waiting poll() and fails the next
 *     sendfile. Harmless after the job has ended.
 *
 * Built by native/build.mjs at install; berth works without it (src/native.ts).
 */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "berth.h"

/* Linux sends at most this much in one sendfile call. */
#define MAX_CHUNK 0x7ffff000
/* At most this much per call on a blocking socket, so that `progress` (STAT) and the stall clock
 * move at least this often; non-blocking calls end when the socket buffer is full anyway. */
#define BLOCKING_CHUNK (16 << 20)

static void *run(void *arg) {
  job_t *j = arg;
  int64_t last = job_now_ms();
  int err = 0;
  int on = 1, off_ = 0;
  int corked = setsockopt(j->sock, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0;
  int flags = job_block(j, SO_SNDTIMEO);
  size_t chunk = flags >= 0 ? BLOCKING_CHUNK : MAX_CHUNK;
  for (;;) {
    if (job_cancelled(j)) { err = ECANCELED; break; }
    off_t off = (off_t)j->position;
    ssize_t n = sendfile(j->sock, j->file, &off, chunk);
    if (n > 0) {
      j->position += n;
      j->moved += n;
      job_progress(j);
      last = job_now_ms();
      continue;
    }
    if (n == 0) break; /* end of file */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) { err = errno; break; }
    struct pollfd p = { .fd = j->sock, .events = POLLOUT, .revents = 0 };
    int r = flags >= 0 ? 0 : poll(&p, 1, POLL_SLICE_MS);
    if (r < 0 && errno != EINTR) { err = errno; break; }
    if (r == 0 && job_now_ms() - last >= j->stall_ms) { err = ETIMEDOUT; break; }
  }
  /* Uncorking sends the tail now, before the caller ends the socket. */
  if (corked) setsockopt(j->sock, IPPROTO_TCP, TCP_CORK, &off_, sizeof off_);
  job_finish(j, err, flags);
  return NULL;
}

napi_value berth_send_now(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  double sock, file, position, count;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || napi_get_value_double(env, argv[0], &sock) != napi_ok || napi_get_value_double(env, argv[1], &file) != napi_ok ||
      napi_get_value_double(env, argv[2], &position) != napi_ok || napi_get_value_double(env, argv[3], &count) != napi_ok ||
      position < 0 || count < 0) {
    napi_throw_type_error(env, NULL, "sendNow(socketFd, fileFd, position, count)");
    return NULL;
  }
  off_t off = (off_t)position;
  ssize_t n;
  do n = sendfile((int)sock, (int)file, &off, count > MAX_CHUNK ? MAX_CHUNK : (size_t)count);
  while (n < 0 && errno == EINTR);
  napi_create_double(env, n < 0 ? -(double)errno : (double)n, &out);
  return out;
}

napi_value berth_send_start(napi_env env, napi_callback_info info) {
  return job_start(env, info, "start(socketFd, fileFd, position, stallMs, progress, callback, mayBlock)", "berth-sendfile", run);
}
