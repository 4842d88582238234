// File: common/reflection_v1.h
// gRPC server reflection v1 (grpc.reflection.v1.ServerReflection) beside the v1alpha one
// Debian's gRPC ships, so tools that ask v1 first (newer grpcurl, Postman, grpcui) find the
// services without falling back. Answers from the process's generated descriptor pool.
//
//   ReflectionV1Service reflection({"loom.v1.Orchestrator", "loom.v1.Registry"});
//   builder.RegisterService(&reflection);
//
// Thread-safe; one handler thread per open stream (sync API).
#ifndef LOOM_COMMON_REFLECTION_V1_H_
#define LOOM_COMMON_REFLECTION_V1_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace loom {

class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: the full names list_services reports (reflection and health are added).
  explicit ReflectionV1Service(std::vector<std::string> services);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

  // One request's response; `sent` holds the files this stream has sent (each goes once).
  grpc::reflection::v1::ServerReflectionResponse Answer(
      const grpc::reflection::v1::ServerReflectionRequest& request,
      std::vector<std::string>* sent) const;

 private:
  std::vector<std::string> services_;
};

}  // namespace loom

#endif  // LOOM_COMMON_REFLECTION_V1_H_
