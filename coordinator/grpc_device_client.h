// File: coordinator/grpc_device_client.h
// DeviceClient over gRPC: one channel per worker address, kept for reuse. Thread-safe.
#ifndef LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_
#define LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/device_client.h"
#include "loom/v1/worker.grpc.pb.h"

namespace loom {

class GrpcDeviceClient : public DeviceClient {
 public:
  absl::StatusOr<v1::Usage> Infer(const DeviceCall& call, const ChunkSink& sink,
                                  Cancellation* cancel) override;

 private:
  v1::Worker::Stub* StubFor(const std::string& address);

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::Worker::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_GRPC_DEVICE_CLIENT_H_
