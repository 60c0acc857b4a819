/*
 * Large plain uploads on a thread of their own: the socket is read and the file written with
 * blocking calls, with no event loop and no JS between them (as the C servers do it), while the
 * main thread serves every other session.
 *
 *   receive(socketFd, fileFd, position, stallMs, progress, callback, mayBlock) -> job
 *     Reads the socket until the client ends it and writes every byte to the file from `position`,
 *     each read written in full before the next. Both descriptors are duplicated before receive()
 *     returns; the job closes its copies when it ends. Bytes written so far are stored in
 *     `progress` (a BigInt64Array of one element). Calls callback(errno, bytesWritten, disk) once,
 *     on the main thread: errno 0 when the client ended the connection (FIN) and everything read
 *     is in the file; ECANCELED after cancel() (job.c); ETIMEDOUT when nothing came for stallMs;
 *     the socket's errno (ECONNRESET, …) with disk false, or the write's (ENOSPC, EDQUOT, EIO, …)
 *     with disk true. What was read before a network error or a cancel is written first.
 *     With `mayBlock` (the caller's event loop has stopped reading the socket and leaves it alone
 *     until the callback), the socket is made blocking with a receive timeout of POLL_SLICE_MS,
 *     and reads wait for a full buffer (MSG_WAITALL), so one read and one write move a megabyte;
 *     the flags are put back before the callback. Otherwise the job waits with poll().
 *     A reset that comes behind the data may still read as an end (the kernel reports the end
 *     first); the caller checks the connection once the job has ended (data/transfer.ts).
 *
 * Built by native/build.mjs at install; berth works without it (src/native.ts).
 */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "berth.h"

/* Bytes read, then written, at once. */
#define BUFFER_SIZE (1 << 20)

/* Writes buf[0, n) at the job's position; 0, or the write's errno. */
static int write_all(job_t *j, const char *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = pwrite(j->file, buf + done, n - done, (off_t)(j->position + (int64_t)done));
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    j->position += (int64_t)done;
    j->moved += (int64_t)done;
    return w < 0 ? errno : EIO;
  }
  j->position += (int64_t)n;
  j->moved += (int64_t)n;
  return 0;
}

static void *run(void *arg) {
  job_t *j = arg;
  int err = 0;
  int flags = job_block(j, SO_RCVTIMEO);
  int wait_all = flags >= 0 ? MSG_WAITALL : 0;
  int64_t last = job_now_ms();
  char *buf = malloc(BUFFER_SIZE);
  if (buf == NULL) err = ENOMEM;
  while (err == 0) {
    if (job_cancelled(j)) { err = ECANCELED; break; }
    ssize_t n = recv(j->sock, buf, BUFFER_SIZE, wait_all);
    if (n > 0) {
      err = write_all(j, buf, (size_t)n);
      job_progress(j);
      if (err != 0) j->disk = 1;
      last = job_now_ms();
      continue;
    }
    if (n == 0) break; /* the client's FIN, or the shutdown of cancel() (job_finish tells) */
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) { err = errno; break; }
    struct pollfd p = { .fd = j->sock, .events = POLLIN, .revents = 0 };
    int r = flags >= 0 ? 0 : poll(&p, 1, POLL_SLICE_MS);
    if (r < 0 && errno != EINTR) { err = errno; break; }
    if (r == 0 && job_now_ms() - last >= j->stall_ms) { err = ETIMEDOUT; break; }
  }
  free(buf);
  job_finish(j, err, flags);
  return NULL;
}

napi_value berth_receive_start(napi_env env, napi_callback_info info) {
  return job_start(env, info, "receive(socketFd, fileFd, position, stallMs, progress, callback, mayBlock)", "berth-receive", run);
}
