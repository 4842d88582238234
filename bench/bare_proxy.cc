// File: bench/bare_proxy.cc
// loom_bare_proxy: a forwarding proxy for Worker.Infer with no logic at all, the floor for any
// coordinator hop on this gRPC build. loom_bench puts it between its client and a worker and
// reports it beside the raw hop and the coordinator. Bench-only; not part of the product.
//
//   loom_bare_proxy --target=127.0.0.1:PORT --mode=sync|callback --ready_file=F
//
// --mode=sync: a sync handler that makes a blocking call to the worker on its own thread (what
// the coordinator's Complete does). --mode=callback: a callback handler whose reactor forwards
// the worker's chunks from a callback client reactor (no thread of its own per call). Both
// serve through StartGrpcServer, as the daemons do.
#include <atomic>
#include <iostream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_server.h"
#include "common/ready_file.h"
#include "loom/v1/worker.grpc.pb.h"

ABSL_FLAG(std::string, target, "", "The worker's address.");
ABSL_FLAG(std::string, mode, "sync", "sync or callback.");
ABSL_FLAG(std::string, ready_file, "", "Written with {\"grpc\": address} once serving.");

namespace loom::bench {
namespace {

class SyncProxy final : public v1::Worker::Service {
 public:
  explicit SyncProxy(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Worker::NewStub(std::move(channel))) {}

  grpc::Status Infer(grpc::ServerContext* context, const v1::InferRequest* request,
                     grpc::ServerWriter<v1::InferChunk>* writer) override {
    grpc::ClientContext upstream;
    upstream.set_deadline(context->deadline());
    auto reader = stub_->Infer(&upstream, *request);
    v1::InferChunk chunk;
    while (reader->Read(&chunk)) writer->Write(chunk);
    return reader->Finish();
  }

 private:
  std::unique_ptr<v1::Worker::Stub> stub_;
};

// One forwarded call: reads from the worker and writes to the client, one message at a time
// (the next read starts when the previous write is done).
class Forward final : public grpc::ServerWriteReactor<v1::InferChunk>,
                      public grpc::ClientReadReactor<v1::InferChunk> {
 public:
  Forward(v1::Worker::Stub* stub, grpc::CallbackServerContext* context,
          const v1::InferRequest* request) {
    upstream_.set_deadline(context->deadline());
    stub->async()->Infer(&upstream_, request, this);
    // Held until reading ends, so the client call is not done between a read and the next.
    grpc::ClientReadReactor<v1::InferChunk>::AddHold();
    grpc::ClientReadReactor<v1::InferChunk>::StartRead(&chunk_);
    grpc::ClientReadReactor<v1::InferChunk>::StartCall();
  }

  // Client side (the worker).
  void OnReadDone(bool ok) override {
    if (ok) {
      grpc::ServerWriteReactor<v1::InferChunk>::StartWrite(&chunk_);
    } else {
      grpc::ClientReadReactor<v1::InferChunk>::RemoveHold();
      Drained(true);
    }
  }
  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      status_ = status;
      upstream_done_ = true;
    }
    Drained(false);
    Unref();
  }
  // Server side (our client).
  void OnWriteDone(bool ok) override {
    if (ok) {
      grpc::ClientReadReactor<v1::InferChunk>::StartRead(&chunk_);
    } else {
      upstream_.TryCancel();
      grpc::ClientReadReactor<v1::InferChunk>::RemoveHold();
      Drained(true);
    }
  }
  void OnDone() override { Unref(); }

 private:
  // Finishes the server call once the worker's stream ended and its status is known.
  void Drained(bool reads_over) {
    absl::MutexLock lock(&mu_);
    if (reads_over) reads_over_ = true;
    if (reads_over_ && upstream_done_ && !finished_) {
      finished_ = true;
      grpc::ServerWriteReactor<v1::InferChunk>::Finish(status_);
    }
  }
  // Both calls are done with this object.
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  grpc::ClientContext upstream_;
  v1::InferChunk chunk_;
  absl::Mutex mu_;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool reads_over_ ABSL_GUARDED_BY(mu_) = false;
  bool upstream_done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> refs_{2};  // the server call and the client call
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class CallbackProxy final : public v1::Worker::CallbackService {
 public:
  explicit CallbackProxy(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Worker::NewStub(std::move(channel))) {}

  grpc::ServerWriteReactor<v1::InferChunk>* Infer(grpc::CallbackServerContext* context,
                                                  const v1::InferRequest* request) override {
    return new Forward(stub_.get(), context, request);
  }

 private:
  std::unique_ptr<v1::Worker::Stub> stub_;
};

}  // namespace
}  // namespace loom::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_target),
                                     grpc::InsecureChannelCredentials());
  std::unique_ptr<grpc::Service> service;
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "sync") {
    service = std::make_unique<loom::bench::SyncProxy>(channel);
  } else if (mode == "callback") {
    service = std::make_unique<loom::bench::CallbackProxy>(channel);
  } else {
    std::cerr << "loom_bare_proxy: --mode must be sync or callback, not '" << mode << "'\n";
    return 2;
  }
  // The same server setup as the daemons (threads, health, reflection).
  auto started = loom::StartGrpcServer("127.0.0.1:0", {service.get()},
                                       grpc::InsecureServerCredentials());
  if (!started.ok()) {
    std::cerr << "loom_bare_proxy: " << started.status() << "\n";
    return 1;
  }
  if (absl::Status s = loom::WriteFileAtomically(
          absl::GetFlag(FLAGS_ready_file),
          absl::StrCat("{\"grpc\": \"", started->address, "\"}\n"));
      !s.ok()) {
    std::cerr << "loom_bare_proxy: " << s << "\n";
    return 1;
  }
  started->server->Wait();
}
