/*
 * Passive data listeners without libuv's TCP handles (src/data/passive.ts NativeListener).
 *
 *   listenTcp(host, port, backlog) -> descriptor, or -errno
 *     A non-blocking listening socket on numeric address `host` (IPv4 or IPv6, with a scope id
 *     where it has one) and `port`, with SO_REUSEADDR (as libuv binds) and TCP_NODELAY, which
 *     Linux hands to every socket it accepts. IPv6 stays dual-stack, as Node's listen leaves it.
 *     -EINVAL for a host that is not a numeric address.
 *   acceptInto(fd, out) -> remote address, or -errno (-EAGAIN: nobody waiting)
 *     accept4(2), non-blocking and close-on-exec: the peer's address as Node writes it
 *     ("127.0.0.1", "::1", "::ffff:127.0.0.1"), and the descriptor in out[0] (an Int32Array).
 *     Not an array of the two: making one and setting its elements through Node-API cost three
 *     times the rest of the call. A name of its own (it was acceptOne(fd) -> [descriptor,
 *     address]): an addon built from the older source lacks it, and its passive listeners are
 *     Node's (src/native.ts, pick), instead of its acceptOne being called as this one.
 *
 * A connection accepted here never becomes a libuv handle unless a net.Socket is made from its
 * descriptor: no TCP wrap, no getpeername, no handle close on the loop's next turn. The descriptor
 * is closed with fs.closeSync. The listener is watched with watchReadable (native/watch.c) and
 * closed with fs.closeSync too.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "berth.h"

napi_value berth_listen_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char host[INET6_ADDRSTRLEN + 64];
  size_t len = 0;
  int32_t port = -1, backlog = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, &len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || napi_get_value_int32(env, argv[2], &backlog) != napi_ok ||
      port < 0 || port > 65535 || backlog < 1) {
    napi_throw_type_error(env, NULL, "listenTcp(host, port, backlog)");
    return NULL;
  }
  if (len >= sizeof host - 1) return berth_number(env, -EINVAL);
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  hints.ai_socktype = SOCK_STREAM;
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  if (getaddrinfo(host, service, &hints, &ai) != 0 || ai == NULL) {
    if (ai != NULL) freeaddrinfo(ai);
    return berth_number(env, -EINVAL);
  }
  int rc = 0;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) rc = -errno;
  int on = 1;
  if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) rc = -errno;
  if (rc == 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) rc = -errno;
  if (rc == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) rc = -errno;
  if (rc == 0 && listen(fd, backlog) != 0) rc = -errno;
  freeaddrinfo(ai);
  if (rc != 0) {
    if (fd >= 0) close(fd);
    return berth_number(env, rc);
  }
  return berth_number(env, fd);
}

/* Dotted-quad form of an IPv4 address (host byte order) into `out` (16 bytes at least): what
 * inet_ntop writes, without its sprintf, on every passive connection. */
static void format_ipv4(uint32_t a, char *out) {
  char *p = out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    unsigned v = (a >> shift) & 0xff;
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    if (shift > 0) *p++ = '.';
  }
  *p = '\0';
}

napi_value berth_accept_into(napi_env env, napi_callback_info info) {
  int32_t lfd;
  void *data;
  if (!berth_fd_and_array(env, info, "acceptInto(fd, Int32Array(1))", napi_int32_array, 1, &lfd, &data)) return NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd;
  do {
    fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return berth_number(env, -errno);
  char name[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    format_ipv4(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), name);
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, name, sizeof name);
  }
  napi_value v;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v) != napi_ok) {
    close(fd);
    return berth_number(env, -ENOMEM);
  }
  *(int32_t *)data = fd;
  return v;
}
