/*
 * What a download's sendfile job (sendfile.c) and an upload's receive job (receive.c) share: see
 * job.h. The job's memory is freed once both its JS object is collected and its callback is
 * released (both on the main thread).
 *
 *   cancel(job)
 *     Ends either kind of job soon: the socket is shut down, which wakes a waiting poll() or a
 *     blocking call, and fails or ends the next one. Harmless after the job has ended.
 */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "berth.h"

int64_t job_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int job_cancelled(job_t *j) {
  return __atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE);
}

void job_progress(job_t *j) {
  __atomic_store_n(j->progress, j->moved, __ATOMIC_RELAXED);
}

int job_block(job_t *j, int timeout_opt) {
  if (!j->may_block) return -1;
  struct timeval slice = { .tv_sec = POLL_SLICE_MS / 1000, .tv_usec = (POLL_SLICE_MS % 1000) * 1000 };
  int flags = fcntl(j->sock, F_GETFL);
  if (flags < 0 || setsockopt(j->sock, SOL_SOCKET, timeout_opt, &slice, sizeof slice) != 0) return -1;
  if (fcntl(j->sock, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    struct timeval none = { 0, 0 };
    setsockopt(j->sock, SOL_SOCKET, timeout_opt, &none, sizeof none);
    return -1;
  }
  return flags;
}

void job_finish(job_t *j, int err, int flags) {
  if (flags >= 0) {
    struct timeval none = { 0, 0 };
    fcntl(j->sock, F_SETFL, flags);
    setsockopt(j->sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
    setsockopt(j->sock, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  }
  pthread_mutex_lock(&j->lock);
  if (job_cancelled(j) && !j->disk) err = ECANCELED;
  close(j->sock);
  close(j->file);
  j->sock = -1;
  j->error = err;
  pthread_mutex_unlock(&j->lock);
  napi_call_threadsafe_function(j->done, j, napi_tsfn_blocking);
  napi_release_threadsafe_function(j->done, napi_tsfn_release);
}

/* On the main thread, once the job has ended: callback(errno, moved, disk). */
static void call_done(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  job_t *j = data;
  if (env != NULL) {
    napi_value args[3], global, result;
    napi_create_int32(env, j->error, &args[0]);
    napi_create_double(env, (double)j->moved, &args[1]);
    napi_get_boolean(env, j->disk != 0, &args[2]);
    napi_get_global(env, &global);
    napi_call_function(env, global, cb, 3, args, &result);
    napi_delete_reference(env, j->progress_ref);
    j->progress_ref = NULL;
  }
}

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

napi_value job_start(napi_env env, napi_callback_info info, const char *usage, const char *thread_name, void *(*run)(void *)) {
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
    return fail(env, usage);
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
    napi_create_string_utf8(env, "cannot duplicate a descriptor for a transfer thread", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &e);
    napi_throw(env, e);
    return NULL;
  }
  napi_create_reference(env, argv[4], 1, &j->progress_ref);
  napi_create_string_utf8(env, thread_name, NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, j, finalize_thread, NULL, call_done, &j->done) != napi_ok) {
    close(j->sock);
    close(j->file);
    napi_delete_reference(env, j->progress_ref);
    pthread_mutex_destroy(&j->lock);
    free(j);
    return fail(env, "cannot make a transfer thread's callback");
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
    napi_throw_error(env, "EAGAIN", "cannot start a transfer thread");
    return NULL;
  }
  napi_create_external(env, j, finalize_job, NULL, &out);
  return out;
}

napi_value berth_job_cancel(napi_env env, napi_callback_info info) {
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
