/*
 * A transfer that runs on a thread of its own (sendfile.c: a download; receive.c: an upload), on
 * copies of the caller's socket and file descriptors, and reports back once, on the main thread.
 * job.c holds what the two share: the arguments, the descriptors, the thread, the callback,
 * cancel(), and the blocking mode with its timeout.
 */
#ifndef BERTH_JOB_H
#define BERTH_JOB_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>

/* How long one wait (poll(), or a blocking call's timeout) lasts (ms) before the stall clock and
 * the cancel flag are looked at again. */
#define POLL_SLICE_MS 250

typedef struct job {
  pthread_mutex_t lock;
  int sock;              /* our copy of the socket; -1 once closed */
  int file;              /* our copy of the file */
  int64_t position;
  int64_t moved;         /* bytes sent (download) or written to the file (upload) */
  int64_t stall_ms;
  int cancelled;
  int error;
  int disk;              /* error is the file's (upload: a write failed), not the socket's */
  int refs;              /* main thread only: the JS object and the callback each hold one */
  int may_block;         /* the caller's event loop does not read the socket meanwhile */
  int64_t *progress;     /* inside the BigInt64Array held by progress_ref */
  napi_ref progress_ref;
  napi_threadsafe_function done;
} job_t;

/* Reads the arguments (socketFd, fileFd, position, stallMs, progress, callback, mayBlock),
 * duplicates both descriptors and runs `run` on a new thread; returns the job's JS object, or
 * NULL with an exception pending. `usage` is the message for wrong arguments. */
napi_value job_start(napi_env env, napi_callback_info info, const char *usage, const char *name, void *(*run)(void *));

/* Ends the job on its thread: puts the socket's flags back (`flags` from job_block), closes both
 * copies, and calls back with `err` (ECANCELED if cancel() came meanwhile and the file did not
 * fail). Call last; `j` may be freed after it. */
void job_finish(job_t *j, int err, int flags);

/* With may_block: clears O_NONBLOCK on the socket and sets `timeout_opt` (SO_SNDTIMEO or
 * SO_RCVTIMEO) to POLL_SLICE_MS. Returns the flags to put back, or -1 when the socket stays
 * non-blocking (not asked for, or it failed). */
int job_block(job_t *j, int timeout_opt);

/* Whether cancel() has come. */
int job_cancelled(job_t *j);

/* Stores `moved` for the main thread to read (progress). */
void job_progress(job_t *j);

int64_t job_now_ms(void);

#endif
