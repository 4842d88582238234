// File: coordinator/grpc_device_client.h
// DeviceClient over gRPC: one channel per worker (address, device id), kept for reuse.
// With TLS, each channel checks that the worker's certificate names the device the registry
// holds at that address (the device id as the expected server name), and presents the
// coordinator's own certificate. Thread-safe.
#ifndef LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_
#define LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_

#include <map>
#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/device_client.h"
#include "loom/v1/worker.grpc.pb.h"

namespace loom {

class GrpcDeviceClient : public DeviceClient {
 public:
  // `credentials`: ChannelCredentialsFor (common/tls.h). `tls`: whether they are TLS ones, so
  // the device id is checked against the worker's certificate.
  GrpcDeviceClient(std::shared_ptr<grpc::ChannelCredentials> credentials, bool tls)
      : credentials_(std::move(credentials)), tls_(tls) {}

  absl::StatusOr<v1::Usage> Infer(const DeviceCall& call, const ChunkSink& sink,
                                  Cancellation* cancel) override;

 private:
  v1::Worker::Stub* StubFor(const DeviceCall& call);

  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const bool tls_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::Worker::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_
