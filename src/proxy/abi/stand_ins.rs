//! Stand-ins for the host functions off Wasm, so the crate builds and its tests run on the host.
//! Every call answers with the scripted `Reply` (by default `Unimplemented`), hands out its bytes
//! allocated the way the SDK's `proxy_on_memory_allocate` does (a boxed slice of exactly that
//! size), and is recorded for tests to inspect.

#![allow(clippy::too_many_arguments)]

use std::cell::RefCell;

const UNIMPLEMENTED: u32 = 12;

/// What the stand-in host answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u32,
    /// Returned through a data pointer and size (buffers, maps, properties, shared data).
    pub data: Option<Vec<u8>>,
    /// Returned through a number pointer (time, CAS token, queue or metric id).
    pub number: u64,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            status: UNIMPLEMENTED,
            data: None,
            number: 0,
        }
    }
}

/// One call as the stand-in host saw it: the import's name and its byte arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Call {
    pub name: &'static str,
    pub bytes: Vec<Vec<u8>>,
}

thread_local! {
    static REPLY: RefCell<Reply> = RefCell::new(Reply::default());
    static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
}

/// Makes every following call answer `reply`.
#[cfg(test)]
pub(crate) fn answer(reply: Reply) {
    REPLY.with(|current| *current.borrow_mut() = reply);
}

/// The calls made so far on this thread, forgetting them.
#[cfg(test)]
pub(crate) fn take_calls() -> Vec<Call> {
    CALLS.with(|calls| std::mem::take(&mut *calls.borrow_mut()))
}

unsafe fn input(data: *const u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(data, size).to_vec()
    }
}

/// Records the call and returns the scripted reply.
fn called(name: &'static str, bytes: Vec<Vec<u8>>) -> Reply {
    CALLS.with(|calls| calls.borrow_mut().push(Call { name, bytes }));
    REPLY.with(|reply| reply.borrow().clone())
}

/// Writes the reply's bytes out the way a host does: only on `Ok`, into VM-allocated memory.
unsafe fn hand_out(reply: &Reply, data_out: *mut *mut u8, size_out: *mut usize) -> u32 {
    if reply.status == 0 {
        if let Some(data) = &reply.data {
            *size_out = data.len();
            *data_out = Box::into_raw(data.clone().into_boxed_slice()).cast::<u8>();
        }
    }
    reply.status
}

pub unsafe fn proxy_log(_level: u32, message_data: *const u8, message_size: usize) -> u32 {
    called("proxy_log", vec![input(message_data, message_size)]).status
}

pub unsafe fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32 {
    let reply = called("proxy_get_current_time_nanoseconds", vec![]);
    *return_time = reply.number;
    reply.status
}

pub unsafe fn proxy_set_tick_period_milliseconds(_period: u32) -> u32 {
    called("proxy_set_tick_period_milliseconds", vec![]).status
}

pub unsafe fn proxy_get_buffer_bytes(
    _buffer_type: u32,
    _start: usize,
    _max_size: usize,
    return_buffer_data: *mut *mut u8,
    return_buffer_size: *mut usize,
) -> u32 {
    let reply = called("proxy_get_buffer_bytes", vec![]);
    hand_out(&reply, return_buffer_data, return_buffer_size)
}

pub unsafe fn proxy_get_header_map_pairs(
    _map_type: u32,
    return_map_data: *mut *mut u8,
    return_map_size: *mut usize,
) -> u32 {
    let reply = called("proxy_get_header_map_pairs", vec![]);
    hand_out(&reply, return_map_data, return_map_size)
}

pub unsafe fn proxy_get_header_map_value(
    _map_type: u32,
    key_data: *const u8,
    key_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
) -> u32 {
    let reply = called(
        "proxy_get_header_map_value",
        vec![input(key_data, key_size)],
    );
    hand_out(&reply, return_value_data, return_value_size)
}

pub unsafe fn proxy_add_header_map_value(
    _map_type: u32,
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    let bytes = vec![input(key_data, key_size), input(value_data, value_size)];
    called("proxy_add_header_map_value", bytes).status
}

pub unsafe fn proxy_replace_header_map_value(
    _map_type: u32,
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    let bytes = vec![input(key_data, key_size), input(value_data, value_size)];
    called("proxy_replace_header_map_value", bytes).status
}

pub unsafe fn proxy_remove_header_map_value(
    _map_type: u32,
    key_data: *const u8,
    key_size: usize,
) -> u32 {
    called(
        "proxy_remove_header_map_value",
        vec![input(key_data, key_size)],
    )
    .status
}

pub unsafe fn proxy_get_property(
    path_data: *const u8,
    path_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
) -> u32 {
    let reply = called("proxy_get_property", vec![input(path_data, path_size)]);
    hand_out(&reply, return_value_data, return_value_size)
}

pub unsafe fn proxy_set_property(
    path_data: *const u8,
    path_size: usize,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    let bytes = vec![input(path_data, path_size), input(value_data, value_size)];
    called("proxy_set_property", bytes).status
}

pub unsafe fn proxy_get_shared_data(
    key_data: *const u8,
    key_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
    return_cas: *mut u32,
) -> u32 {
    let reply = called("proxy_get_shared_data", vec![input(key_data, key_size)]);
    if reply.status == 0 {
        *return_cas = reply.number as u32;
    }
    hand_out(&reply, return_value_data, return_value_size)
}

pub unsafe fn proxy_set_shared_data(
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
    _cas: u32,
) -> u32 {
    let bytes = vec![input(key_data, key_size), input(value_data, value_size)];
    called("proxy_set_shared_data", bytes).status
}

pub unsafe fn proxy_register_shared_queue(
    name_data: *const u8,
    name_size: usize,
    return_id: *mut u32,
) -> u32 {
    let reply = called(
        "proxy_register_shared_queue",
        vec![input(name_data, name_size)],
    );
    *return_id = reply.number as u32;
    reply.status
}

pub unsafe fn proxy_enqueue_shared_queue(
    _queue_id: u32,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    called(
        "proxy_enqueue_shared_queue",
        vec![input(value_data, value_size)],
    )
    .status
}

pub unsafe fn proxy_dequeue_shared_queue(
    _queue_id: u32,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
) -> u32 {
    let reply = called("proxy_dequeue_shared_queue", vec![]);
    hand_out(&reply, return_value_data, return_value_size)
}

pub unsafe fn proxy_send_local_response(
    _status_code: u32,
    status_code_details_data: *const u8,
    status_code_details_size: usize,
    body_data: *const u8,
    body_size: usize,
    headers_data: *const u8,
    headers_size: usize,
    grpc_status: i32,
) -> u32 {
    let bytes = vec![
        input(status_code_details_data, status_code_details_size),
        input(body_data, body_size),
        input(headers_data, headers_size),
        grpc_status.to_le_bytes().to_vec(),
    ];
    called("proxy_send_local_response", bytes).status
}

pub unsafe fn proxy_define_metric(
    _metric_type: u32,
    name_data: *const u8,
    name_size: usize,
    return_id: *mut u32,
) -> u32 {
    let reply = called("proxy_define_metric", vec![input(name_data, name_size)]);
    *return_id = reply.number as u32;
    reply.status
}

pub unsafe fn proxy_increment_metric(_metric_id: u32, _offset: i64) -> u32 {
    called("proxy_increment_metric", vec![]).status
}

pub unsafe fn proxy_record_metric(_metric_id: u32, _value: u64) -> u32 {
    called("proxy_record_metric", vec![]).status
}
