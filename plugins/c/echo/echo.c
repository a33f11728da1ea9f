// The seed echo server as a plugin written in C: every chunk read comes back as
// `Echo=>` + chunk. Built by `cargo xtask build` into plugins/echo-c.wasm (see README,
// "Writing a plugin"); the bindings (stream_plugin.h/.c) are generated from wit/ by
// wit-bindgen at build time, never committed.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream_plugin.h"

#define PREFIX "Echo=>"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
// The most bytes read per chunk (as the Rust echo's buffer).
#define CHUNK (64 * 1024)

static void set_str(stream_plugin_string_t *s, const char *text) {
    stream_plugin_string_dup(s, text);
}

void exports_switchboard_plugin_meta_describe(switchboard_plugin_types_plugin_info_t *ret) {
    set_str(&ret->name, "echo-c");
    set_str(&ret->version, "0.1.0");
    set_str(&ret->summary, "replies Echo=> + each chunk read (written in C)");
    ret->listen.len = 1;
    ret->listen.ptr = malloc(sizeof(stream_plugin_string_t));
    set_str(&ret->listen.ptr[0], "tcp:50007");
}

// Drops what a stream error owns; true when the stream was closed (not failed).
static bool closed(wasi_io_streams_stream_error_t *err) {
    if (err->tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
        wasi_io_error_error_drop_own(err->val.last_operation_failed);
        return false;
    }
    return true;
}

// Writes all of `bytes`: check-write for a permit, write at most that, then flush.
// (blocking-write-and-flush traps on more than 4096 bytes.) false when the stream ended.
static bool send_all(wasi_io_streams_borrow_output_stream_t out, uint8_t *bytes, size_t len) {
    wasi_io_streams_stream_error_t err;
    while (len > 0) {
        uint64_t permit = 0;
        if (!wasi_io_streams_method_output_stream_check_write(out, &permit, &err)) {
            closed(&err);
            return false;
        }
        if (permit == 0) {
            wasi_io_poll_own_pollable_t ready = wasi_io_streams_method_output_stream_subscribe(out);
            wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
            wasi_io_poll_pollable_drop_own(ready);
            continue;
        }
        size_t n = len < permit ? len : (size_t)permit;
        stream_plugin_list_u8_t chunk = {.ptr = bytes, .len = n};
        if (!wasi_io_streams_method_output_stream_write(out, &chunk, &err)) {
            closed(&err);
            return false;
        }
        bytes += n;
        len -= n;
    }
    if (!wasi_io_streams_method_output_stream_blocking_flush(out, &err)) {
        closed(&err);
        return false;
    }
    return true;
}

bool exports_switchboard_plugin_handler_handle_connection(
    exports_switchboard_plugin_handler_connection_info_t *conn,
    exports_switchboard_plugin_handler_own_input_stream_t input,
    exports_switchboard_plugin_handler_own_output_stream_t output,
    stream_plugin_string_t *err_out) {
    (void)conn;
    wasi_io_streams_borrow_input_stream_t in = wasi_io_streams_borrow_input_stream(input);
    wasi_io_streams_borrow_output_stream_t out = wasi_io_streams_borrow_output_stream(output);
    uint8_t *reply = malloc(PREFIX_LEN + CHUNK);
    bool ok = reply != NULL;
    if (!ok) {
        set_str(err_out, "echo-c: out of memory");
    } else {
        memcpy(reply, PREFIX, PREFIX_LEN);
    }
    while (ok) {
        stream_plugin_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(in, CHUNK, &chunk, &err)) {
            if (!closed(&err)) {
                set_str(err_out, "echo-c: reading the connection failed");
                ok = false;
            }
            break; // closed: the client closed its side
        }
        if (chunk.len == 0) {
            stream_plugin_list_u8_free(&chunk);
            continue;
        }
        memcpy(reply + PREFIX_LEN, chunk.ptr, chunk.len);
        size_t n = PREFIX_LEN + chunk.len;
        stream_plugin_list_u8_free(&chunk);
        if (!send_all(out, reply, n)) {
            break; // the client went away: nothing left to answer
        }
    }
    free(reply);
    wasi_io_streams_input_stream_drop_own(input);
    wasi_io_streams_output_stream_drop_own(output);
    return ok;
}
