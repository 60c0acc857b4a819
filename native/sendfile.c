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
 *     BigInt64Array of one element). Calls callback(errno, bytesSent) once, on the main thread;
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
 *   cancel(job)
 *     Ends the job soon: the socket is shut down, which wakes a waiting poll() and fails the next
 *     sendfile. Harmless after the job has ended.
 *
 * Built by native/build.mjs at install; berth works without it (src/data/native.ts).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/time.h>

#include "berth.h"

/* Linux sends at most this much in one sendfile call. */
#define MAX_CHUNK 0x7ffff000
/* At most this much per call on a blocking socket, so that `progress` (STAT) and the stall clock
 * move at least this often; non-blocking calls end when the socket buffer is full anyway. */
#define BLOCKING_CHUNK (16 << 20)
/* How long one poll() waits (ms) before the stall clock is looked at again. */
#define POLL_SLICE_MS 250

typedef struct job {
  pthread_mutex_t lock;
  int sock;              /* our copy of the socket; -1 once closed */
  int file;              /* our copy of the file */
  int64_t position;
  int64_t sent;
  int64_t stall_ms;
  int cancelled;
  int error;
  int refs;              /* main thread only: the JS object and the callback each hold one */
  int may_block;         /* the caller's event loop does not read the socket meanwhile */
  int64_t *progress;     /* inside the BigInt64Array held by progress_ref */
  napi_ref progress_ref;
  napi_threadsafe_function done;
} job_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *run(void *arg) {
  job_t *j = arg;
  int64_t last = now_ms();
  int err = 0;
  int on = 1, off_ = 0;
  int corked = setsockopt(j->sock, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0;
  int flags = -1;
  size_t chunk = MAX_CHUNK;
  if (j->may_block) {
    struct timeval slice = { .tv_sec = POLL_SLICE_MS / 1000, .tv_usec = (POLL_SLICE_MS % 1000) * 1000 };
    flags = fcntl(j->sock, F_GETFL);
    if (flags >= 0 && setsockopt(j->sock, SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof slice) == 0 &&
        fcntl(j->sock, F_SETFL, flags & ~O_NONBLOCK) == 0) {
      chunk = BLOCKING_CHUNK;
    } else {
      flags = -1;
    }
  }
  for (;;) {
    if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) { err = ECANCELED; break; }
    off_t off = (off_t)j->position;
    ssize_t n = sendfile(j->sock, j->file, &off, chunk);
    if (n > 0) {
      j->position += n;
      j->sent += n;
      __atomic_store_n(j->progress, j->sent, __ATOMIC_RELAXED);
      last = now_ms();
      continue;
    }
    if (n == 0) break; /* end of file */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) { err = errno; break; }
    struct pollfd p = { .fd = j->sock, .events = POLLOUT, .revents = 0 };
    int r = poll(&p, 1, POLL_SLICE_MS);
    if (r < 0 && errno != EINTR) { err = errno; break; }
    if (r == 0 && now_ms() - last >= j->stall_ms) { err = ETIMEDOUT; break; }
  }
  if (flags >= 0) {
    struct timeval none = { 0, 0 };
    fcntl(j->sock, F_SETFL, flags);
    setsockopt(j->sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  }
  /* Uncorking sends the tail now, before the caller ends the socket. */
  if (corked) setsockopt(j->sock, IPPROTO_TCP, TCP_CORK, &off_, sizeof off_);
  pthread_mutex_lock(&j->lock);
  if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) err = ECANCELED;
  close(j->sock);
  close(j->file);
  j->sock = -1;
  j->error = err;
  pthread_mutex_unlock(&j->lock);
  napi_call_threadsafe_function(j->done, j, napi_tsfn_blocking);
  napi_release_threadsafe_function(j->done, napi_tsfn_release);
  return NULL;
}

/* On the main thread, once the job has ended: callback(errno, sent). */
static void call_done(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  job_t *j = data;
  if (env != NULL) {
    napi_value args[2], global, result;
    napi_create_int32(env, j->error, &args[0]);
    napi_create_double(env, (double)j->sent, &args[1]);
    napi_get_global(env, &global);
    napi_call_function(env, global, cb, 2, args, &result);
    napi_delete_reference(env, j->progress_ref);
    j->progress_ref = NULL;
  }
}

/* A job is freed once both its JS object is collected and its callback is released (both on the
 * main thread). */
static void unref_job(job_t *j) {
  if (--j->refs > 0) return;
  pthread_mutex_destroy(&j->lock);
  free(j);
}

static void finalize_job(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  unref_job(data);
}

static void finalize_thread(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  unref_job(data);
}

static int get_int64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  *out = (int64_t)d;
  return 1;
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

napi_value berth_send_now(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  int64_t sock, file, position, count;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || !get_int64(env, argv[0], &sock) || !get_int64(env, argv[1], &file) ||
      !get_int64(env, argv[2], &position) || !get_int64(env, argv[3], &count) || position < 0 || count < 0) {
    return fail(env, "sendNow(socketFd, fileFd, position, count)");
  }
  off_t off = (off_t)position;
  ssize_t n;
  do n = sendfile((int)sock, (int)file, &off, count > MAX_CHUNK ? MAX_CHUNK : (size_t)count);
  while (n < 0 && errno == EINTR);
  napi_create_double(env, n < 0 ? -(double)errno : (double)n, &out);
  return out;
}

napi_value berth_send_start(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out, name;
  int64_t sock, file, position, stall;
  bool may_block = false;
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_valuetype cbtype;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6 || !get_int64(env, argv[0], &sock) || !get_int64(env, argv[1], &file) ||
      !get_int64(env, argv[2], &position) || !get_int64(env, argv[3], &stall) || position < 0 ||
      napi_get_typedarray_info(env, argv[4], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_bigint64_array || length < 1 || napi_typeof(env, argv[5], &cbtype) != napi_ok ||
      cbtype != napi_function || (argc >= 7 && napi_get_value_bool(env, argv[6], &may_block) != napi_ok)) {
    return fail(env, "start(socketFd, fileFd, position, stallMs, progress, callback, mayBlock)");
  }
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL) return fail(env, "out of memory");
  pthread_mutex_init(&j->lock, NULL);
  j->refs = 2; /* the JS object, and the thread with its callback */
  j->position = position;
  j->stall_ms = stall > 0 ? stall : INT64_MAX / 2;
  j->may_block = may_block;
  j->progress = data;
  j->sock = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
  j->file = j->sock < 0 ? -1 : fcntl((int)file, F_DUPFD_CLOEXEC, 0);
  int err = errno;
  if (j->sock < 0 || j->file < 0) {
    if (j->sock >= 0) close(j->sock);
    pthread_mutex_destroy(&j->lock);
    free(j);
    napi_value code, msg, e;
    napi_create_string_utf8(env, err == EMFILE ? "EMFILE" : err == EBADF ? "EBADF" : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "cannot duplicate a descriptor for sendfile", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &e);
    napi_throw(env, e);
    return NULL;
  }
  napi_create_reference(env, argv[4], 1, &j->progress_ref);
  napi_create_string_utf8(env, "berth-sendfile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, j, finalize_thread, NULL, call_done, &j->done) != napi_ok) {
    close(j->sock);
    close(j->file);
    napi_delete_reference(env, j->progress_ref);
    pthread_mutex_destroy(&j->lock);
    free(j);
    return fail(env, "cannot make the sendfile callback");
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 << 10);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, run, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    close(j->sock);
    close(j->file);
    j->sock = -1;
    napi_delete_reference(env, j->progress_ref);
    j->progress_ref = NULL;
    j->refs = 1; /* only the JS object is left once the callback is released */
    napi_release_threadsafe_function(j->done, napi_tsfn_abort);
    napi_throw_error(env, "EAGAIN", "cannot start a sendfile thread");
    return NULL;
  }
  napi_create_external(env, j, finalize_job, NULL, &out);
  return out;
}

napi_value berth_send_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    return fail(env, "cancel(job)");
  }
  job_t *j = data;
  pthread_mutex_lock(&j->lock);
  __atomic_store_n(&j->cancelled, 1, __ATOMIC_RELEASE);
  if (j->sock >= 0) shutdown(j->sock, SHUT_RDWR);
  pthread_mutex_unlock(&j->lock);
  return NULL;
}
