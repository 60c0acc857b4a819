/*
 * TCP options set once on a listening socket, for every connection it accepts: Linux copies a
 * listener's TCP_NODELAY and keep-alive settings (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
 * TCP_KEEPCNT) into each socket accept(2) returns, with the keep-alive timer armed. Set on the
 * listener, they cost one system call each per listener instead of one each per connection (a
 * control connection took five, a data connection one).
 *
 *   listenerOptions(fd, noDelay, keepAliveIdleSeconds) -> 0, or -errno
 *     TCP_NODELAY when `noDelay`; when keepAliveIdleSeconds > 0, SO_KEEPALIVE with that idle
 *     time, probes 1 s apart and 10 of them (the values libuv sets for a socket's setKeepAlive).
 *   inlineUrgent(fd) -> 1 or 0 (SO_OOBINLINE, now set), or -errno
 *     Urgent data stays in the stream, where it was sent: clients send part of the Telnet
 *     interrupt before ABOR (RFC 959 §4.1.3) as TCP urgent data, and Python's ftplib all of
 *     "ABOR\r\n", whose last byte Linux would otherwise take out of the stream. Set on a
 *     listener, every socket it accepts has it.
 *   socketOptions(fd) -> [noDelay, keepAlive, idle, interval, count], or -errno
 *     What a socket has now (for tests and diagnostics).
 *   nothingPending(fd) -> 1, 0, or -errno
 *     1 when the peer has acknowledged every byte sent (SIOCOUTQ: at most our FIN is in flight)
 *     and has sent nothing that is still unread (SIOCINQ): closing the socket then loses nothing,
 *     and the kernel still delivers and resends the FIN after the close.
 *   quickAck(fd) -> 0, or -errno
 *     TCP_QUICKACK: what the peer sends next is acknowledged at once rather than after the
 *     delayed-ACK timer (about 40 ms here). Not lasting: the kernel goes back to delaying once the
 *     socket answers what it received again (src/data/tls.ts, after a handshake flight).
 *   shutdownWrite(fd) -> 0, or -errno
 *     shutdown(SHUT_WR): the FIN goes after the bytes written, and the socket can still be read
 *     (a download's connection as accepted, ended without a net.Socket: src/data/raw.ts linger).
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "berth.h"

/* libuv's keep-alive probes: one a second, ten of them (uv_tcp_keepalive). */
#define KEEPALIVE_INTERVAL 1
#define KEEPALIVE_COUNT 10

static int set_int(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

napi_value berth_listener_options(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd = -1, idle = 0;
  bool no_delay = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &no_delay) != napi_ok ||
      napi_get_value_int32(env, argv[2], &idle) != napi_ok || fd < 0 || idle < 0) {
    napi_throw_type_error(env, NULL, "listenerOptions(fd, noDelay, keepAliveIdleSeconds)");
    return NULL;
  }
  int rc = 0;
  if (no_delay) rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (rc == 0 && idle > 0) rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  if (rc == 0 && idle > 0) rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle);
  if (rc == 0 && idle > 0) rc = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, KEEPALIVE_INTERVAL);
  if (rc == 0 && idle > 0) rc = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_COUNT);
  return berth_number(env, rc);
}

/* The one argument of a call taking a descriptor; false (a TypeError thrown with `usage`) when it
 * is missing or not one (berth.h: listen.c uses it too). */
bool berth_fd_argument(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  *fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

bool berth_fd_and_array(napi_env env, napi_callback_info info, const char *usage, napi_typedarray_type type, size_t min_length, int32_t *fd, void **data) {
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type got;
  size_t length;
  *fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0 ||
      napi_get_typedarray_info(env, argv[1], &got, &length, data, NULL, NULL) != napi_ok || got != type || length < min_length) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

napi_value berth_socket_options(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "socketOptions(fd)", &fd)) return NULL;
  static const int levels[5] = { IPPROTO_TCP, SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP };
  static const int names[5] = { TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT };
  napi_value out;
  napi_create_array_with_length(env, 5, &out);
  for (uint32_t i = 0; i < 5; i++) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, levels[i], names[i], &v, &len) != 0) return berth_number(env, -errno);
    napi_set_element(env, out, i, berth_number(env, v));
  }
  return out;
}

napi_value berth_inline_urgent(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "inlineUrgent(fd)", &fd)) return NULL;
  int rc = set_int(fd, SOL_SOCKET, SO_OOBINLINE, 1);
  if (rc != 0) return berth_number(env, rc);
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &v, &len) != 0) return berth_number(env, -errno);
  return berth_number(env, v != 0 ? 1 : 0);
}

napi_value berth_nothing_pending(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "nothingPending(fd)", &fd)) return NULL;
  int unacked = 0, unread = 0;
  if (ioctl(fd, SIOCOUTQ, &unacked) != 0 || ioctl(fd, SIOCINQ, &unread) != 0) return berth_number(env, -errno);
  /* The FIN counts one in SIOCOUTQ until it is acknowledged. */
  return berth_number(env, unacked <= 1 && unread == 0 ? 1 : 0);
}

napi_value berth_quick_ack(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "quickAck(fd)", &fd)) return NULL;
  return berth_number(env, set_int(fd, IPPROTO_TCP, TCP_QUICKACK, 1));
}

napi_value berth_shutdown_write(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!berth_fd_argument(env, info, "shutdownWrite(fd)", &fd)) return NULL;
  return berth_number(env, shutdown(fd, SHUT_WR) == 0 ? 0 : -errno);
}
