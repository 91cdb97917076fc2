#ifndef PRESENCE_SERVICE_REFLECTION_V1_H_
#define PRESENCE_SERVICE_REFLECTION_V1_H_

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace presence {

// grpc.reflection.v1.ServerReflection. gRPC 1.51 serves only v1alpha, and a
// client that speaks only v1 (newer grpcurl, buf curl --reflect-protocol
// grpc-v1, grpc-js's reflection clients) gets UNIMPLEMENTED from it.
//
// gRPC's own v1alpha service on the same server answers: each v1 stream is
// relayed, message by message, to a v1alpha stream over an in-process channel
// of its own. The two versions' messages are wire-identical, so requests and
// answers pass through unchanged, and both versions list the same services
// (each other included) and describe the same files.
//
// Register it exactly when gRPC's reflection plugin is registered (it relays
// to v1alpha, which must be there), then Attach() the built server before it
// accepts connections; until then a stream ends UNAVAILABLE. The relayed
// stream has the v1 stream's deadline and is cancelled with it. Callers are
// authenticated on the v1 call, by the server's credentials, like every
// call; the in-process hop never leaves the process. Thread-safe.
class ReflectionV1Service final
    : public grpc::reflection::v1::ServerReflection::Service {
 public:
  ReflectionV1Service() = default;
  ReflectionV1Service(const ReflectionV1Service&) = delete;
  ReflectionV1Service& operator=(const ReflectionV1Service&) = delete;

  // `server` must outlive every stream: gRPC's Server does, as it waits for
  // its handlers in Shutdown().
  void Attach(grpc::Server* server);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>*
          stream) override;

 private:
  absl::Mutex mu_;
  grpc::Server* server_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_REFLECTION_V1_H_
