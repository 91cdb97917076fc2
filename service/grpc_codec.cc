#include "service/grpc_codec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "service/log.h"

namespace presence {
namespace {

// Where protobuf's log lines go while this thread parses a request: into the
// call's answer rather than presenced's log.
thread_local std::string* protobuf_complaints = nullptr;

void OnProtobufLog(google::protobuf::LogLevel level, const char* filename,
                   int line, const std::string& message) {
  if (protobuf_complaints != nullptr) {
    if (!protobuf_complaints->empty()) protobuf_complaints->append("; ");
    protobuf_complaints->append(message);
    return;
  }
  if (level == google::protobuf::LOGLEVEL_INFO) return;
  // Anything else protobuf says could be made to repeat by a peer.
  static ThrottledErrorLog* const log = new ThrottledErrorLog();
  log->Log(absl::StrCat("protobuf (", filename, ":", line, "): ", message));
}

}  // namespace

void InstallProtobufLogHandler() {
  google::protobuf::SetLogHandler(&OnProtobufLog);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode mirrors the gRPC code numbering by design.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status ParseMessage(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; Deserialize drains it
  std::string complaints;
  protobuf_complaints = &complaints;
  const grpc::Status parsed =
      grpc::SerializationTraits<google::protobuf::Message>::Deserialize(
          &copy, message);
  protobuf_complaints = nullptr;
  if (parsed.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the request is not a valid ", message->GetDescriptor()->full_name(),
      " message: ",
      !complaints.empty() ? complaints
                          : "its protobuf encoding is truncated or malformed"));
}

void SerializeMessage(const google::protobuf::Message& message,
                      grpc::ByteBuffer* out) {
  out->Clear();  // gRPC's writer wants an empty buffer
  bool own_buffer;
  grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, out,
                                                                  &own_buffer)
      .IgnoreError();  // fails only for a message over 2 GiB
}

}  // namespace presence
