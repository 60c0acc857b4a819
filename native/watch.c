/*
 * watchReadable(fd, callback) -> id > 0, or a negative errno; unwatch(id)
 *
 * Tells the main thread when a socket that no Node stream owns can be read: a passive data
 * connection taken as accepted (src/data/raw.ts), for a small upload read from its descriptor
 * without a net.Socket. `callback(status)` runs on the event loop (with Node's callback scope, so
 * promises settle after it) each time the socket has bytes, its end or an error, until unwatch();
 * status is 0, or UV_EBADF once the socket reported an error (the watch then stops by itself, as a
 * libuv poll handle's does: the reads say what the error is).
 *
 * Every watched socket is in one epoll set of the addon's own, and that set is the one descriptor
 * libuv polls for them (a single uv_poll handle, made at the first watch): watching is one
 * epoll_ctl call and unwatching another. A poll handle per socket cost five system calls more each
 * time (libuv checks a new descriptor by adding it to its epoll set and removing it again, makes it
 * non-blocking, and removes it once more before adding it), an async context, a reference and a
 * finalizer: a small upload's watch cost more than its read.
 *
 * Level-triggered, like the poll handle it replaces: a socket with bytes left unread is reported
 * again on the loop's next turn. An unwatched socket gets no callback after unwatch(), not even for
 * an event of the batch being dispatched; a stale id's unwatch does nothing. While any socket is
 * watched, the loop stays alive, as an open socket keeps it. The descriptor must stay open while
 * watched, and no other libuv handle may poll it meanwhile.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include "berth.h"

/* A watched socket: a slot of the set's table. An event carries its slot and generation, so one
 * that comes after an unwatch (later in the same batch, or for a slot used again since) is told
 * from a live one and dropped: nothing is freed under it. */
typedef struct slot {
  int fd;
  uint32_t gen;
  bool live;
  napi_ref callback;
} slot_t;

/* One per environment that watches (the main thread's: src/native.ts loads the addon there). */
typedef struct watchset {
  napi_env env;
  int epfd;
  uv_poll_t poll;
  napi_async_context context;
  slot_t *slots;
  uint32_t size;     /* slots in the table */
  uint32_t *free;    /* unused slots (a stack) */
  uint32_t nfree;
  size_t count;      /* live watchers */
} watchset_t;

static watchset_t *the_set;

/* Generations wrap below 2^20, so that an id (gen * 2^32 + slot) is an exact double. */
#define GEN_MASK 0xFFFFFu
#define SLOT_SPAN 4294967296.0

static void stop(watchset_t *s, uint32_t i) {
  slot_t *w = &s->slots[i];
  if (!w->live) return;
  w->live = false;
  /* Out of the set at once. A descriptor closed already has left it by itself (the error is
   * fine). */
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  napi_delete_reference(s->env, w->callback);
  w->callback = NULL;
  s->free[s->nfree++] = i;
  if (--s->count == 0) uv_unref((uv_handle_t *)&s->poll);
}

#define BATCH 64

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  watchset_t *s = (watchset_t *)p->data;
  struct epoll_event ev[BATCH];
  int n = epoll_wait(s->epfd, ev, BATCH, 0);
  napi_env env = s->env;
  for (int k = 0; k < n; k++) {
    uint32_t i = (uint32_t)(ev[k].data.u64 & 0xFFFFFFFFu);
    uint32_t gen = (uint32_t)(ev[k].data.u64 >> 32);
    if (i >= s->size || !s->slots[i].live || s->slots[i].gen != gen) continue;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value cb, recv, arg, result;
    if (napi_get_reference_value(env, s->slots[i].callback, &cb) == napi_ok && cb != NULL) {
      int st = 0;
      /* As libuv's poll handle: on an error the watch stops, and the callback hears EBADF. */
      if (ev[k].events & EPOLLERR) {
        stop(s, i);
        st = UV_EBADF;
      }
      napi_get_global(env, &recv);
      arg = berth_number(env, st);
      /* An exception is Node's to report (uncaught), as for any callback of the loop. */
      if (napi_make_callback(env, s->context, recv, cb, 1, &arg, &result) != napi_ok) {
        bool pending = false;
        napi_value err;
        if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &err) == napi_ok) {
          napi_fatal_exception(env, err);
        }
      }
    }
    napi_close_handle_scope(env, scope);
  }
}

/* The set, made at the first watch; NULL (and a negative errno in *err) when it cannot be. */
static watchset_t *set_for(napi_env env, int *err) {
  if (the_set != NULL) return the_set->env == env ? the_set : NULL;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    *err = -EINVAL;
    return NULL;
  }
  watchset_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    *err = -ENOMEM;
    return NULL;
  }
  s->env = env;
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    *err = -errno;
    free(s);
    return NULL;
  }
  int rc = uv_poll_init(loop, &s->poll, s->epfd);
  if (rc != 0) {
    *err = rc;
    close(s->epfd);
    free(s);
    return NULL;
  }
  s->poll.data = s;
  rc = uv_poll_start(&s->poll, UV_READABLE, on_poll);
  if (rc != 0) {
    /* The handle belongs to the loop now: it stays, stopped and unreferenced, with the set. */
    uv_unref((uv_handle_t *)&s->poll);
    *err = rc;
    return NULL;
  }
  uv_unref((uv_handle_t *)&s->poll);
  napi_value name;
  napi_create_string_utf8(env, "berth.watchReadable", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->context);
  the_set = s;
  return s;
}

/* A free slot (the table grows as needed); false when out of memory. */
static bool take_slot(watchset_t *s, uint32_t *out) {
  if (s->nfree == 0) {
    uint32_t size = s->size == 0 ? 64 : s->size * 2;
    slot_t *slots = realloc(s->slots, size * sizeof *slots);
    if (slots == NULL) return false;
    s->slots = slots;
    uint32_t *fr = realloc(s->free, size * sizeof *fr);
    if (fr == NULL) return false;
    s->free = fr;
    for (uint32_t i = size; i > s->size; i--) {
      slots[i - 1] = (slot_t){ .fd = -1, .gen = 0, .live = false, .callback = NULL };
      fr[s->nfree++] = i - 1;
    }
    s->size = size;
  }
  *out = s->free[--s->nfree];
  return true;
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
  int err = -EINVAL;
  watchset_t *s = set_for(env, &err);
  if (s == NULL) return berth_number(env, err);
  uint32_t i;
  if (!take_slot(s, &i)) return berth_number(env, -ENOMEM);
  slot_t *w = &s->slots[i];
  w->gen = (w->gen + 1) & GEN_MASK;
  struct epoll_event ev = { .events = EPOLLIN, .data = { .u64 = ((uint64_t)w->gen << 32) | i } };
  if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = -errno;
    s->free[s->nfree++] = i;
    return berth_number(env, e);
  }
  if (napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok) {
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
    s->free[s->nfree++] = i;
    return berth_number(env, -ENOMEM);
  }
  w->fd = fd;
  w->live = true;
  if (s->count++ == 0) uv_ref((uv_handle_t *)&s->poll);
  return berth_number(env, (double)w->gen * SLOT_SPAN + (double)i);
}

napi_value berth_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double id = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_double(env, argv[0], &id) != napi_ok || !(id >= 0)) {
    napi_throw_type_error(env, NULL, "unwatch(id)");
    return NULL;
  }
  watchset_t *s = the_set;
  if (s != NULL && s->env == env && id < (double)(GEN_MASK + 1) * SLOT_SPAN) {
    uint32_t gen = (uint32_t)(id / SLOT_SPAN);
    uint32_t i = (uint32_t)(id - (double)gen * SLOT_SPAN);
    if (i < s->size && s->slots[i].live && s->slots[i].gen == gen) stop(s, i);
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static void on_set_closed(uv_handle_t *h) {
  watchset_t *s = (watchset_t *)h->data;
  close(s->epfd);
  free(s->slots);
  free(s->free);
  free(s);
}

/* releaseWatches() -> true when the set went (its descriptor closes on the loop's next turn), false
 * while a socket is still watched or there was none. The next watch makes a new one. For a server
 * that stops: a process whose servers have all stopped holds no descriptor for it. */
napi_value berth_release_watches(napi_env env, napi_callback_info info) {
  (void)info;
  watchset_t *s = the_set;
  bool released = false;
  if (s != NULL && s->env == env && s->count == 0) {
    the_set = NULL;
    napi_async_destroy(env, s->context);
    uv_close((uv_handle_t *)&s->poll, on_set_closed);
    released = true;
  }
  napi_value out;
  napi_get_boolean(env, released, &out);
  return out;
}
