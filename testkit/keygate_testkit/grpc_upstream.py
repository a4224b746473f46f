"""A small gRPC upstream for the tests (grpcio, on 127.0.0.1): one unary method,
`/demo.Echo/Say`, that answers the request bytes and sends the identity Keygate forwarded
(`x-keygate-key-id`) back as trailing metadata. Raw bytes in and out: no generated stubs."""

from concurrent import futures

import grpc

METHOD = "/demo.Echo/Say"


class _Echo(grpc.GenericRpcHandler):
    def service(self, handler_call_details):
        if handler_call_details.method != METHOD:
            return None

        def say(request, context):
            metadata = dict(context.invocation_metadata())
            context.set_trailing_metadata((("x-keygate-key-id", metadata.get("x-keygate-key-id", "")),))
            return request

        return grpc.unary_unary_rpc_method_handler(say)


class GrpcUpstream:
    def __init__(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((_Echo(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(grace=None)


def say(port, message=b"hello", key=None, timeout=10):
    """Calls `/demo.Echo/Say` through 127.0.0.1:`port` (Envoy), with `key` as a bearer token;
    returns (answer bytes, trailing metadata) or raises grpc.RpcError."""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        answer, outcome = call.with_call(message, metadata=metadata, timeout=timeout)
        return answer, dict(outcome.trailing_metadata())
