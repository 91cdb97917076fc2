#include "service/reflection_v1.h"

#include <memory>

#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace presence {
namespace {

namespace v1 = grpc::reflection::v1;
namespace v1alpha = grpc::reflection::v1alpha;

// Same fields, same numbers, other package: the bytes of one are the other.
bool Translate(const google::protobuf::Message& from,
               google::protobuf::Message* to) {
  std::string bytes;
  return from.SerializeToString(&bytes) && to->ParseFromString(bytes);
}

}  // namespace

void ReflectionV1Service::Attach(grpc::Server* server) {
  absl::MutexLock lock(&mu_);
  server_ = server;
}

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ServerReflectionResponse,
                             v1::ServerReflectionRequest>* stream) {
  grpc::Server* server;
  {
    absl::MutexLock lock(&mu_);
    server = server_;
  }
  if (server == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "server reflection is not ready yet");
  }
  // A channel per stream, not one kept in this service: it lives only while
  // a handler runs, so it never outlives the server it points into, whatever
  // order their owners destroy them in. Reflection streams are rare, and an
  // in-process channel costs no I/O. No receive limit: the network client
  // has its own, and a file with its imports may exceed gRPC's default 4 MB.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  std::unique_ptr<v1alpha::ServerReflection::Stub> v1alpha =
      v1alpha::ServerReflection::NewStub(server->InProcessChannel(args));
  // The deadline of the v1 stream, and its cancellation (a client that goes
  // away, presenced's shutdown) ends the relayed stream too.
  std::unique_ptr<grpc::ClientContext> relayed_context =
      grpc::ClientContext::FromServerContext(*context);
  std::unique_ptr<grpc::ClientReaderWriter<v1alpha::ServerReflectionRequest,
                                           v1alpha::ServerReflectionResponse>>
      relayed = v1alpha->ServerReflectionInfo(relayed_context.get());

  v1::ServerReflectionRequest request;
  v1alpha::ServerReflectionRequest relayed_request;
  v1alpha::ServerReflectionResponse relayed_response;
  v1::ServerReflectionResponse response;
  grpc::Status failed;  // stays OK unless a message cannot be translated
  // v1alpha answers every request with exactly one response (an error, too,
  // is an error_response in the stream), so one Read follows each Write.
  while (stream->Read(&request)) {
    if (!Translate(request, &relayed_request)) {
      failed = grpc::Status(grpc::StatusCode::INTERNAL,
                            "cannot translate the request to v1alpha");
      break;
    }
    // If the relayed stream ended early, Finish() below says why.
    if (!relayed->Write(relayed_request) || !relayed->Read(&relayed_response)) {
      break;
    }
    if (!Translate(relayed_response, &response)) {
      failed = grpc::Status(grpc::StatusCode::INTERNAL,
                            "cannot translate the v1alpha response to v1");
      break;
    }
    if (!stream->Write(response)) break;  // the client went away
  }
  if (!failed.ok()) relayed_context->TryCancel();
  relayed->WritesDone();
  const grpc::Status finished = relayed->Finish();
  return failed.ok() ? finished : failed;
}

}  // namespace presence
