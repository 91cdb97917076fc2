#ifndef PRESENCE_SERVICE_GRPC_CODEC_H_
#define PRESENCE_SERVICE_GRPC_CODEC_H_

// The edge between gRPC's raw byte buffers and presenced's statuses and
// messages: the service's methods are "raw" (presence_service.h says why),
// so parsing, serializing and the status mapping are presenced's own.

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace presence {

// Routes protobuf's log through presenced's: a line about a request being
// parsed goes into that call's INVALID_ARGUMENT answer; any other at most
// once a second. Process-wide; call once before serving.
void InstallProtobufLogHandler();

// The one place where an absl::Status becomes a grpc::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Parses `bytes` into *message; INVALID_ARGUMENT naming the message type and
// protobuf's complaint (what InstallProtobufLogHandler() catches) if the
// bytes are not one. `bytes` is left as it was.
absl::Status ParseMessage(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message);

// Replaces *out with `message`'s bytes.
void SerializeMessage(const google::protobuf::Message& message,
                      grpc::ByteBuffer* out);

}  // namespace presence

#endif  // PRESENCE_SERVICE_GRPC_CODEC_H_
