#include "worker/worker_service.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"

#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"
#include "worker/sim_provider.h"

namespace loom {
namespace {

using ::loom::testing::WaitFor;

// A Worker service with one simulated model, served in-process on loopback port 0.
class WorkerServiceTest : public ::testing::Test {
 protected:
  void Start(v1::SimBackend backend, int max_concurrency,
             absl::Duration batch_window = absl::Milliseconds(5)) {
    std::vector<ServedModel> models;
    ServedModel m;
    m.info.set_name("llama-3.1-8b");
    m.info.set_family("llama");
    m.provider = std::make_unique<SimProvider>(
        SimProviderOptions{.model = "llama-3.1-8b", .device_id = "dev-a", .backend = backend});
    models.push_back(std::move(m));
    service_ = std::make_unique<WorkerService>(
        WorkerServiceOptions{.device_id = "dev-a", .provider_id = "alice",
                             .max_concurrency = max_concurrency,
                             .batch_window = batch_window},
        std::move(models));
    auto started = StartGrpcServer("127.0.0.1:0", {service_.get()}, grpc::InsecureServerCredentials());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(started->server);
    service_->set_address(started->address);
    stub_ = v1::Worker::NewStub(
        grpc::CreateChannel(started->address, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) StopGrpcServer(server_.get(), absl::Seconds(1));
  }

  static v1::InferRequest Request(const std::string& model = "llama-3.1-8b") {
    v1::InferRequest r;
    r.set_model(model);
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content("hello there");
    return r;
  }

  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  }

  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Worker::Stub> stub_;
};

TEST_F(WorkerServiceTest, StreamsChunksThenAFinalChunkWithUsage) {
  v1::SimBackend backend;
  backend.set_output_tokens(30);
  Start(backend, 2);
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub_->Infer(&context, Request());
  v1::InferChunk chunk;
  std::string text;
  v1::Usage usage;
  int finals = 0;
  while (reader->Read(&chunk)) {
    if (chunk.final()) {
      ++finals;
      usage = chunk.usage();
    } else {
      EXPECT_EQ(finals, 0) << "text after the final chunk";
      text += chunk.text();
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(usage.completion_tokens(), 30);
  EXPECT_THAT(text, ::testing::HasSubstr("[simulated] llama-3.1-8b on dev-a"));
}

TEST_F(WorkerServiceTest, FastOutputMayBeMergedButArrivesWholeAndInOrder) {
  // Zero latency: text queues faster than it is written, and queued chunks are merged. Whatever
  // the timing, the client must see exactly the generated text, in order, then one final chunk.
  v1::SimBackend backend;
  backend.set_output_tokens(2000);
  Start(backend, 2);
  SimProvider reference(
      SimProviderOptions{.model = "llama-3.1-8b", .device_id = "dev-a", .backend = backend});
  const v1::InferRequest request = Request();
  GenerateRequest generate;
  generate.messages.assign(request.messages().begin(), request.messages().end());
  std::string expected;
  size_t pieces = 0;
  std::string finish_reason;
  for (const std::string& piece : reference.AnswerPieces(generate, &finish_reason)) {
    expected += piece;
    ++pieces;
  }

  for (int round = 0; round < 5; ++round) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = stub_->Infer(&context, request);
    v1::InferChunk chunk;
    std::string text;
    size_t messages = 0;
    int finals = 0;
    while (reader->Read(&chunk)) {
      ++messages;
      if (chunk.final()) {
        ++finals;
        EXPECT_EQ(chunk.usage().completion_tokens(), 2000);
        EXPECT_TRUE(chunk.text().empty());
      } else {
        EXPECT_EQ(finals, 0) << "text after the final chunk";
        text += chunk.text();
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(finals, 1);
    EXPECT_EQ(text, expected);
    EXPECT_LE(messages, pieces + 1);
  }
}

// What one Infer call delivered: every message, the text in order, and the final chunk.
struct Delivered {
  std::vector<v1::InferChunk> messages;
  std::string text;  // every message's, the final chunk's included
  int finals = 0;
  grpc::Status status;
};

Delivered ReadAll(v1::Worker::Stub* stub, const v1::InferRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto reader = stub->Infer(&context, request);
  Delivered out;
  v1::InferChunk chunk;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(out.finals, 0) << "a message after the final chunk";
    out.text += chunk.text();
    if (chunk.final()) ++out.finals;
    out.messages.push_back(chunk);
  }
  out.status = reader->Finish();
  return out;
}

std::string SimAnswer(const v1::SimBackend& backend, const v1::InferRequest& request) {
  SimProvider reference(
      SimProviderOptions{.model = "llama-3.1-8b", .device_id = "dev-a", .backend = backend});
  GenerateRequest generate;
  generate.messages.assign(request.messages().begin(), request.messages().end());
  std::string finish_reason, expected;
  for (const std::string& piece : reference.AnswerPieces(generate, &finish_reason)) expected += piece;
  return expected;
}

// Asks `rounds` times; each answer must be `expected` whole, in order, with one final chunk.
// Returns the last one.
Delivered ExpectWholeAnswers(v1::Worker::Stub* stub, const v1::InferRequest& request,
                             const std::string& expected, int rounds) {
  Delivered got;
  for (int round = 0; round < rounds; ++round) {
    got = ReadAll(stub, request);
    EXPECT_TRUE(got.status.ok()) << got.status.error_message();
    EXPECT_EQ(got.text.size(), expected.size()) << "round " << round;
    EXPECT_EQ(got.text, expected) << "round " << round;
    EXPECT_EQ(got.finals, 1) << "round " << round;
  }
  return got;
}

TEST_F(WorkerServiceTest, ABurstForACallerThatBatchesIsOneMessageWithTheStatus) {
  // The whole answer comes within the batching window (an hour here, so no timing decides), so
  // a caller that neither streams it nor minds text on the final chunk gets it as one message.
  v1::SimBackend backend;
  backend.set_output_tokens(200);
  Start(backend, 2, absl::Hours(1));
  v1::InferRequest request = Request();
  request.set_batch_ok(true);
  request.set_final_text_ok(true);
  for (int round = 0; round < 3; ++round) {
    Delivered got = ExpectWholeAnswers(stub_.get(), request, SimAnswer(backend, request), 1);
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0].usage().completion_tokens(), 200);
  }
}

TEST_F(WorkerServiceTest, HeldTextGoesOutAsAChunkForACallerThatReadsNoFinalText) {
  // An older coordinator (no final_text_ok) never finds text on the final chunk, batched or not.
  v1::SimBackend backend;
  backend.set_output_tokens(200);
  Start(backend, 2, absl::Hours(1));
  for (bool batch : {true, false}) {
    v1::InferRequest request = Request();
    request.set_batch_ok(batch);
    Delivered got = ReadAll(stub_.get(), request);
    ASSERT_TRUE(got.status.ok()) << got.status.error_message();
    EXPECT_EQ(got.text, SimAnswer(backend, request));
    ASSERT_FALSE(got.messages.empty());
    EXPECT_TRUE(got.messages.back().final());
    EXPECT_TRUE(got.messages.back().text().empty()) << "batch_ok=" << batch;
    if (batch) EXPECT_EQ(got.messages.size(), 2u);  // the burst, then the final chunk
  }
}

TEST_F(WorkerServiceTest, HeldTextReachesTheCallerBeforeAFailure) {
  // The coordinator pays for, and continues from, the text a failed attempt delivered: text held
  // for batching must not vanish with the error.
  v1::SimBackend backend;
  backend.set_output_tokens(200);
  backend.mutable_fault()->set_kind(v1::SimFault::KIND_FAIL);
  backend.mutable_fault()->set_after_tokens(10);
  Start(backend, 2, absl::Hours(1));
  v1::InferRequest request = Request();
  request.set_batch_ok(true);
  request.set_final_text_ok(true);
  Delivered got = ReadAll(stub_.get(), request);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(got.finals, 0);
  EXPECT_FALSE(got.text.empty());
  v1::SimBackend clean = backend;
  clean.clear_fault();
  EXPECT_TRUE(absl::StartsWith(SimAnswer(clean, request), got.text))
      << got.text;
}

TEST_F(WorkerServiceTest, FinalChunkMayCarryTheLastTextWhenTheCallerReadsIt) {
  // Zero latency, streamed (no batching): text that queues behind a write is merged, and with
  // final_text_ok the final chunk folds into the queued text. Whatever the timing: all the
  // text, in order, one final chunk carrying the usage.
  v1::SimBackend backend;
  backend.set_output_tokens(2000);
  Start(backend, 2);
  v1::InferRequest request = Request();
  request.set_final_text_ok(true);
  Delivered got = ExpectWholeAnswers(stub_.get(), request, SimAnswer(backend, request), 5);
  ASSERT_FALSE(got.messages.empty());
  EXPECT_EQ(got.messages.back().usage().completion_tokens(), 2000);
}

TEST_F(WorkerServiceTest, BatchedTextQueuedBehindAWriteKeepsTheFinalChunksOwnText) {
  // A short window on a zero-latency answer: bursts are flushed while earlier ones are still
  // being written, so a flushed burst waits in the queue when the final chunk (carrying the
  // text held since the last flush) folds into it. Whatever the timing: all of it, in order.
  v1::SimBackend backend;
  backend.set_output_tokens(2000);
  Start(backend, 2, absl::Microseconds(50));
  v1::InferRequest request = Request();
  request.set_batch_ok(true);
  request.set_final_text_ok(true);
  ExpectWholeAnswers(stub_.get(), request, SimAnswer(backend, request), 10);
}

TEST_F(WorkerServiceTest, RefusesWorkBeyondMaxConcurrencyAndFreesTheSlotOnCancel) {
  v1::SimBackend hang;
  hang.mutable_fault()->set_kind(v1::SimFault::KIND_HANG);
  Start(hang, 1);

  grpc::ClientContext first;
  SetDeadline(&first);
  auto first_reader = stub_->Infer(&first, Request());
  ASSERT_TRUE(WaitFor([&] { return service_->Load().active() == 1; }, absl::Seconds(10)));

  grpc::ClientContext second;
  SetDeadline(&second);
  auto second_reader = stub_->Infer(&second, Request());
  v1::InferChunk chunk;
  while (second_reader->Read(&chunk)) {
  }
  grpc::Status refused = second_reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("max concurrency"));

  first.TryCancel();
  while (first_reader->Read(&chunk)) {
  }
  EXPECT_EQ(first_reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return service_->Load().active() == 0; }, absl::Seconds(10)))
      << "the cancelled generation never released its slot";
}

TEST_F(WorkerServiceTest, UnknownModelAndEmptyRequestAreRefused) {
  Start({}, 1);
  auto finish = [&](const v1::InferRequest& request) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = stub_->Infer(&context, request);
    v1::InferChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  grpc::Status unknown = finish(Request("gpt-9"));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND) << unknown.error_message();
  EXPECT_THAT(unknown.error_message(), ::testing::HasSubstr("gpt-9"));
  v1::InferRequest empty;
  empty.set_model("llama-3.1-8b");
  grpc::Status no_messages = finish(empty);
  EXPECT_EQ(no_messages.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << no_messages.error_message();
  EXPECT_EQ(service_->Load().active(), 0);
}

TEST_F(WorkerServiceTest, DescribeReportsDeviceModelsAndLoad) {
  Start({}, 3);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::DescribeResponse response;
  ASSERT_TRUE(stub_->Describe(&context, {}, &response).ok());
  EXPECT_EQ(response.device().device_id(), "dev-a");
  EXPECT_EQ(response.device().provider_id(), "alice");
  EXPECT_TRUE(response.device().simulated());
  EXPECT_EQ(response.device().load().max_concurrency(), 3);
  ASSERT_EQ(response.device().models_size(), 1);
  EXPECT_EQ(response.device().models(0).family(), "llama");
  EXPECT_FALSE(response.device().address().empty());
}

}  // namespace
}  // namespace loom
