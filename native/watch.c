/*
 * watchReadable(fd, callback) -> watcher; unwatch(watcher)
 *
 * Tells the main thread when a socket that no Node stream owns can be read: a passive data
 * connection taken as accepted (src/data/raw.ts), for a small upload read from its descriptor
 * without a net.Socket. A libuv poll handle on the event loop, level-triggered: `callback(status)`
 * runs (with Node's callback scope, so promises settle after it) each time the socket has bytes,
 * its end or an error, until unwatch(); status is 0, or a negative libuv error.
 *
 * The descriptor must stay open while watched, and no other libuv handle may poll it meanwhile
 * (the accepted TCP handle is not reading). unwatch() stops at once, closes the poll handle
 * (libuv removes the descriptor from epoll there and then) and frees it on the loop's next turn;
 * a second unwatch() does nothing. A watcher never unwatched keeps the loop alive, as an open
 * socket does.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

#include "berth.h"

typedef struct watcher {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int stopped;
} watcher_t;

static void on_closed(uv_handle_t *h) {
  watcher_t *w = (watcher_t *)h->data;
  free(w);
}

static void stop(watcher_t *w) {
  if (w->stopped) return;
  w->stopped = 1;
  /* uv_close stops the poll and takes the descriptor out of epoll at once. */
  uv_close((uv_handle_t *)&w->poll, on_closed);
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->context);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)events;
  watcher_t *w = (watcher_t *)p->data;
  if (w->stopped) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, result;
  if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv);
    arg = berth_number(env, status);
    /* An exception is Node's to report (uncaught), as for any callback of the loop. */
    if (napi_make_callback(env, w->context, recv, cb, 1, &arg, &result) != napi_ok) {
      bool pending = false;
      napi_value err;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &err) == napi_ok) {
        napi_fatal_exception(env, err);
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

/* The JS object's finalizer: a watcher never unwatched is stopped when its object goes. The
 * object holds the struct only through this pointer; after unwatch() it points at nothing. */
typedef struct holder {
  watcher_t *w;
} holder_t;

static void finalize_holder(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  holder_t *h = (holder_t *)data;
  if (h->w != NULL) stop(h->w);
  free(h);
}

napi_value berth_watch_readable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  napi_valuetype type = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "watchReadable(fd, callback)");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, NULL, "watchReadable: no event loop");
    return NULL;
  }
  watcher_t *w = calloc(1, sizeof *w);
  holder_t *h = calloc(1, sizeof *h);
  if (w == NULL || h == NULL) {
    free(w);
    free(h);
    napi_throw_error(env, NULL, "watchReadable: out of memory");
    return NULL;
  }
  w->env = env;
  int rc = uv_poll_init_socket(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    free(h);
    return berth_number(env, rc);
  }
  w->poll.data = w;
  napi_value name;
  napi_create_string_utf8(env, "berth.watchReadable", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  napi_create_reference(env, argv[1], 1, &w->callback);
  rc = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (rc != 0) {
    stop(w);
    free(h);
    return berth_number(env, rc);
  }
  h->w = w;
  napi_value out;
  napi_create_object(env, &out);
  if (napi_wrap(env, out, h, finalize_holder, NULL, NULL) != napi_ok) {
    stop(w);
    free(h);
    napi_throw_error(env, NULL, "watchReadable: wrap failed");
    return NULL;
  }
  return out;
}

napi_value berth_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_unwrap(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "unwatch(watcher)");
    return NULL;
  }
  holder_t *h = (holder_t *)data;
  if (h->w != NULL) {
    stop(h->w);
    h->w = NULL;
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}
