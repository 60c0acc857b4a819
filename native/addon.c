/*
 * berth's native part, built at install by native/build.mjs; berth works without it
 * (src/native.ts):
 *   sendfile.c  sendNow, start: sendfile(2) for plain downloads, on a thread of their own
 *   receive.c   receive: large plain uploads read and written on a thread of their own
 *   job.c       cancel: what the two kinds of thread share
 *   lstat.c     lstatNames: the entries of one directory stat'ed relative to it, for listings
 *   sockopt.c   listenerOptions, socketOptions, inlineUrgent: options a listener hands to what it accepts;
 *               nothingPending: whether a finished data connection can close at once;
 *               shutdownWrite: its FIN, where it cannot
 *   beneath.c   openBeneath, createBeneath: a path opened (or a new file created) below a held
 *               directory in one call (openat2)
 *   rename.c    renameNoReplace, renameNoReplaceAsync: a rename that never replaces what is at the
 *               new name (on the main thread, or on the thread pool)
 *   listen.c    listenTcp, acceptInto: passive data listeners and their connections as bare
 *               descriptors, without libuv handles
 *   watch.c     watchReadable, unwatch, releaseWatches: readiness of sockets no Node stream owns
 *               (small uploads, lingering downloads)
 *   io.c        ioOpen, ioRead, ioWrite, ioClose, ioFstat: the small-file path's descriptor
 *               calls, with the result as a number (-errno on failure); ioWriteText: a reply
 *               written straight to the control connection
 *   addon.c     threadCpuNs: this thread's CPU time, for telling a busy kernel from a slow disk
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME berth_native
#endif
#include <node_api.h>

#include <time.h>

#include "berth.h"

napi_value berth_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

/* threadCpuNs(): the calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID), or -1.
 * Taken around a large synchronous file call, it tells a call that ran on a CPU all along (the
 * kernel busy with the call itself) from one that slept waiting for the disk (src/fs/quick.ts). */
static napi_value thread_cpu_ns(napi_env env, napi_callback_info info) {
  (void)info;
  struct timespec ts;
  napi_value out;
  double ns = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec : -1;
  napi_create_double(env, ns, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    { "sendNow", NULL, berth_send_now, NULL, NULL, NULL, napi_enumerable, NULL },
    { "start", NULL, berth_send_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "receive", NULL, berth_receive_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "cancel", NULL, berth_job_cancel, NULL, NULL, NULL, napi_enumerable, NULL },
    { "lstatNames", NULL, berth_lstat_names, NULL, NULL, NULL, napi_enumerable, NULL },
    { "threadCpuNs", NULL, thread_cpu_ns, NULL, NULL, NULL, napi_enumerable, NULL },
    { "listenerOptions", NULL, berth_listener_options, NULL, NULL, NULL, napi_enumerable, NULL },
    { "socketOptions", NULL, berth_socket_options, NULL, NULL, NULL, napi_enumerable, NULL },
    { "inlineUrgent", NULL, berth_inline_urgent, NULL, NULL, NULL, napi_enumerable, NULL },
    { "nothingPending", NULL, berth_nothing_pending, NULL, NULL, NULL, napi_enumerable, NULL },
    { "shutdownWrite", NULL, berth_shutdown_write, NULL, NULL, NULL, napi_enumerable, NULL },
    { "quickAck", NULL, berth_quick_ack, NULL, NULL, NULL, napi_enumerable, NULL },
    { "openBeneath", NULL, berth_open_beneath, NULL, NULL, NULL, napi_enumerable, NULL },
    { "createBeneath", NULL, berth_create_beneath, NULL, NULL, NULL, napi_enumerable, NULL },
    { "renameNoReplace", NULL, berth_rename_no_replace, NULL, NULL, NULL, napi_enumerable, NULL },
    { "renameNoReplaceAsync", NULL, berth_rename_no_replace_async, NULL, NULL, NULL, napi_enumerable, NULL },
    { "listenTcp", NULL, berth_listen_tcp, NULL, NULL, NULL, napi_enumerable, NULL },
    { "acceptInto", NULL, berth_accept_into, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioOpen", NULL, berth_io_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioRead", NULL, berth_io_read, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioWrite", NULL, berth_io_write, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioClose", NULL, berth_io_close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioFstat", NULL, berth_io_fstat, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ioWriteText", NULL, berth_io_write_text, NULL, NULL, NULL, napi_enumerable, NULL },
#ifndef BERTH_NO_WATCH
    { "watchReadable", NULL, berth_watch_readable, NULL, NULL, NULL, napi_enumerable, NULL },
    { "unwatch", NULL, berth_unwatch, NULL, NULL, NULL, napi_enumerable, NULL },
    { "releaseWatches", NULL, berth_release_watches, NULL, NULL, NULL, napi_enumerable, NULL },
#endif
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
