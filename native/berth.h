/* The functions each part of the addon exports (native/addon.c registers them). */
#ifndef BERTH_NATIVE_H
#define BERTH_NATIVE_H
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* A JS number (addon.c). */
napi_value berth_number(napi_env env, double v);

/* The one descriptor argument of a call; false, with a TypeError saying `usage`, when it is missing
 * or not one (sockopt.c). */
bool berth_fd_argument(napi_env env, napi_callback_info info, const char *usage, int32_t *fd);

/* A descriptor and a typed array of `type` with at least `min_length` elements, the call's two
 * arguments; false, with a TypeError saying `usage`, when they are not (sockopt.c). */
bool berth_fd_and_array(napi_env env, napi_callback_info info, const char *usage, napi_typedarray_type type, size_t min_length, int32_t *fd, void **data);

napi_value berth_send_now(napi_env env, napi_callback_info info);
napi_value berth_send_start(napi_env env, napi_callback_info info);
napi_value berth_job_cancel(napi_env env, napi_callback_info info);
napi_value berth_receive_start(napi_env env, napi_callback_info info);
napi_value berth_lstat_names(napi_env env, napi_callback_info info);
napi_value berth_listener_options(napi_env env, napi_callback_info info);
napi_value berth_socket_options(napi_env env, napi_callback_info info);
napi_value berth_inline_urgent(napi_env env, napi_callback_info info);
napi_value berth_quick_ack(napi_env env, napi_callback_info info);
napi_value berth_nothing_pending(napi_env env, napi_callback_info info);
napi_value berth_shutdown_write(napi_env env, napi_callback_info info);
napi_value berth_open_beneath(napi_env env, napi_callback_info info);
napi_value berth_create_beneath(napi_env env, napi_callback_info info);
napi_value berth_rename_no_replace(napi_env env, napi_callback_info info);
napi_value berth_rename_no_replace_async(napi_env env, napi_callback_info info);
napi_value berth_watch_readable(napi_env env, napi_callback_info info);
napi_value berth_unwatch(napi_env env, napi_callback_info info);
napi_value berth_release_watches(napi_env env, napi_callback_info info);
napi_value berth_listen_tcp(napi_env env, napi_callback_info info);
napi_value berth_accept_into(napi_env env, napi_callback_info info);
napi_value berth_io_open(napi_env env, napi_callback_info info);
napi_value berth_io_read(napi_env env, napi_callback_info info);
napi_value berth_io_write(napi_env env, napi_callback_info info);
napi_value berth_io_close(napi_env env, napi_callback_info info);
napi_value berth_io_fstat(napi_env env, napi_callback_info info);
napi_value berth_io_write_text(napi_env env, napi_callback_info info);

#endif
