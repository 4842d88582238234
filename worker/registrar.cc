#include "worker/registrar.h"

#include <algorithm>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/join_token.h"

namespace loom {
namespace {

bool IsPermanent(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

}  // namespace

Registrar::Registrar(RegistrarOptions options, std::function<v1::RegisterRequest()> advertisement,
                     std::function<v1::DeviceLoad()> load,
                     std::function<void(absl::Status)> on_fatal)
    : options_(std::move(options)),
      advertisement_(std::move(advertisement)),
      load_(std::move(load)),
      on_fatal_(std::move(on_fatal)),
      stub_(v1::Registry::NewStub(grpc::CreateChannel(
          options_.coordinator, options_.credentials ? options_.credentials
                                                     : grpc::InsecureChannelCredentials()))) {}

Registrar::~Registrar() { Stop(); }

void Registrar::Start() { thread_ = std::thread([this] { Loop(); }); }

bool Registrar::registered() const {
  absl::MutexLock lock(&mu_);
  return !lease_id_.empty();
}

int Registrar::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

absl::Status Registrar::RegisterOnce() {
  v1::RegisterRequest request = advertisement_();
  *request.mutable_load() = load_();
  if (!options_.join_token.empty()) {
    *request.mutable_join() = MakeJoinProof(options_.join_token, request.device_id(),
                                            request.provider_id(), absl::Now());
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::RegisterResponse response;
  absl::Status status = FromGrpcStatus(stub_->Register(&context, request, &response));
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  lease_id_ = response.lease_id();
  device_id_ = request.device_id();
  interval_ = absl::Milliseconds(std::max<int64_t>(10, response.heartbeat_interval_ms()));
  ++registrations_;
  spdlog::info("registered {} with coordinator {} (lease {}, heartbeat every {})",
               request.device_id(), options_.coordinator, lease_id_,
               absl::FormatDuration(interval_));
  return absl::OkStatus();
}

absl::Status Registrar::HeartbeatOnce() {
  v1::HeartbeatRequest request;
  {
    absl::MutexLock lock(&mu_);
    request.set_device_id(device_id_);
    request.set_lease_id(lease_id_);
  }
  *request.mutable_load() = load_();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::HeartbeatResponse response;
  absl::Status status = FromGrpcStatus(stub_->Heartbeat(&context, request, &response));
  if (!status.ok()) return status;
  if (response.reregister()) {
    spdlog::warn("coordinator no longer knows this device; registering again");
    absl::MutexLock lock(&mu_);
    lease_id_.clear();
    return absl::OkStatus();
  }
  if (response.heartbeat_interval_ms() > 0) {
    absl::MutexLock lock(&mu_);
    interval_ = absl::Milliseconds(std::max<int64_t>(10, response.heartbeat_interval_ms()));
  }
  return absl::OkStatus();
}

void Registrar::Loop() {
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    bool registered;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      registered = !lease_id_.empty();
    }
    absl::Duration wait;
    if (!registered) {
      absl::Status status = RegisterOnce();
      if (status.ok()) {
        backoff = options_.initial_backoff;
        absl::MutexLock lock(&mu_);
        wait = interval_;
      } else if (IsPermanent(status)) {
        spdlog::error("coordinator refused registration: {}", status.ToString());
        on_fatal_(status);
        return;
      } else {
        spdlog::warn("cannot register with {}: {} (retrying in {})", options_.coordinator,
                     status.ToString(), absl::FormatDuration(backoff));
        wait = backoff;
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
    } else {
      absl::Status status = HeartbeatOnce();
      if (!status.ok()) {
        spdlog::warn("heartbeat to {} failed: {}", options_.coordinator, status.ToString());
      }
      absl::MutexLock lock(&mu_);
      // Re-register at once when asked to; otherwise wait one interval.
      wait = lease_id_.empty() ? absl::ZeroDuration() : interval_;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
  }
}

void Registrar::Readvertise() {
  absl::MutexLock lock(&mu_);
  lease_id_.clear();  // the loop registers again after its current wait
}

void Registrar::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  v1::DeregisterRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (lease_id_.empty()) return;
    request.set_device_id(device_id_);
    request.set_lease_id(lease_id_);
    lease_id_.clear();
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::DeregisterResponse response;
  absl::Status status = FromGrpcStatus(stub_->Deregister(&context, request, &response));
  if (status.ok()) {
    spdlog::info("deregistered {}", request.device_id());
  } else {
    spdlog::warn("deregister failed: {}", status.ToString());
  }
}

}  // namespace loom
