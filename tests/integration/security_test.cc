// Identity and transport with real processes: a mesh over mutual TLS, and every way of
// joining or calling it without the right credentials, each refused with nothing registered.
#include <iostream>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/strip.h"
#include "common/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <google/protobuf/descriptor.pb.h>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "loom/v1/orchestrator.grpc.pb.h"
#include "loom/v1/registry.grpc.pb.h"
#include "loom/v1/worker.grpc.pb.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;

class SecurityTest : public MeshFixture {
 protected:
  // Starts a worker that is expected to be refused (it may exit before it is ready, so no
  // ready file is awaited); its log is dir_/NAME.log.
  Daemon StartRefusedWorker(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"--coordinator=" + coordinator_.address, "--model=llama-3.1-8b"});
    Daemon d;
    d.process = Spawn("loom-worker", args, dir_ + "/" + name + ".log");
    EXPECT_TRUE(d.process);
    return d;
  }

  std::vector<std::string> CertArgs(const std::string& dir, const std::string& name) {
    return {"--tls_cert=" + dir + "/" + name + ".crt", "--tls_key=" + dir + "/" + name + ".key",
            "--tls_ca=" + certs() + "/ca.crt"};
  }
};

TEST_F(SecurityTest, AMeshOverMutualTlsServesAndPaysTheCertifiedProvider) {
  tls_ = true;
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  json r = AskJson("Tell me about looms");
  ASSERT_EQ(r["contributions"].size(), 1u) << r.dump();
  EXPECT_EQ(r["contributions"][0]["providerId"], "prov-dev-a");
  // The HTTPS front door with the same certificate.
  CommandResult https = Loom({"--http=" + coordinator_.http, "ask", "hi", "--json"});
  EXPECT_EQ(https.exit_code, 0) << https.err;
  // Plain HTTP to the HTTPS port gets nothing useful.
  CommandResult plain_http = RunCommand("loom", {"--plaintext", "--http=" + coordinator_.http, "ask", "hi"});
  EXPECT_NE(plain_http.exit_code, 0);
}

TEST_F(SecurityTest, WorkersWithoutTheRightCertificateAreNeverListed) {
  tls_ = true;
  StartCoordinator();
  MakeCerts({"dev-a:prov-dev-a", "dev-b:prov-dev-b"});
  // Another CA's certificate for the very same device id.
  const std::string rogue = dir_ + "/rogue";
  CommandResult made = RunCommand(std::string(LOOM_SOURCE_DIR) + "/deploy/dev-certs.sh", {rogue, "dev-c:prov-dev-c"});
  ASSERT_EQ(made.exit_code, 0) << made.err;

  // No client certificate at all (a worker cannot even serve without one; a hand-made
  // Register): the TLS handshake is refused.
  {
    auto ca_only = ChannelCredentialsFor({.ca = certs() + "/ca.crt"});
    ASSERT_TRUE(ca_only.ok());
    auto registry = v1::Registry::NewStub(grpc::CreateChannel(coordinator_.address, *ca_only));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::RegisterRequest request;
    request.set_device_id("dev-c");
    v1::RegisterResponse response;
    EXPECT_EQ(registry->Register(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  Daemon other_ca = StartRefusedWorker("other-ca", [&] {
    std::vector<std::string> a = {"--device_id=dev-c", "--provider_id=prov-dev-c"};
    for (auto& x : CertArgs(rogue, "dev-c")) a.push_back(x);
    return a;
  }());
  // A valid certificate used for another device id, or another provider's account.
  Daemon wrong_id = StartRefusedWorker("wrong-id", [&] {
    std::vector<std::string> a = {"--device_id=dev-b", "--provider_id=prov-dev-a"};
    for (auto& x : CertArgs(certs(), "dev-a")) a.push_back(x);
    return a;
  }());
  Daemon wrong_provider = StartRefusedWorker("wrong-provider", [&] {
    std::vector<std::string> a = {"--device_id=dev-a", "--provider_id=prov-dev-b"};
    for (auto& x : CertArgs(certs(), "dev-a")) a.push_back(x);
    return a;
  }());
  // The refused identities are permanent refusals: those workers stop by themselves (exit 3).
  EXPECT_EQ(WEXITSTATUS(wrong_id.process->Wait(absl::Seconds(20))), 3);
  EXPECT_EQ(WEXITSTATUS(wrong_provider.process->Wait(absl::Seconds(20))), 3);
  EXPECT_THAT(wrong_id.process->Log(), HasSubstr("certificate is for device 'dev-a', not 'dev-b'"));
  EXPECT_THAT(wrong_provider.process->Log(), HasSubstr("certified for provider 'prov-dev-a'"));
  // The other CA's handshake failure is retried; wait until it has failed at least once.
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(other_ca.process->Log(), "cannot register"); },
                      absl::Seconds(20)));
  EXPECT_TRUE(Devices().empty());
  EXPECT_THAT(coordinator_.process->Log(), HasSubstr("refused Register"));
}

TEST_F(SecurityTest, ClientsWithoutCredentialsAndPeersCallingWorkersDirectlyAreRefused) {
  tls_ = true;
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  // The CLI with the CA but no client certificate, and in plaintext.
  CommandResult no_cert = RunCommand("loom", {"--coordinator=" + coordinator_.address,
                                              "--tls_ca=" + certs() + "/ca.crt", "devices"});
  EXPECT_EQ(no_cert.exit_code, 1) << no_cert.out;
  CommandResult plaintext = RunCommand("loom", {"--coordinator=" + coordinator_.address, "--plaintext",
                                                "--timeout_ms=3000", "devices"});
  EXPECT_EQ(plaintext.exit_code, 1) << plaintext.out;
  CommandResult nothing = RunCommand("loom", {"--coordinator=" + coordinator_.address, "devices"});
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_THAT(nothing.err, HasSubstr("--tls_ca"));

  // dev-b, holding a valid device certificate, calls dev-a's Worker service directly (to use it
  // for free) and heartbeats in dev-a's name: both refused.
  auto dev_b = ChannelCredentialsFor({.cert = certs() + "/dev-b.crt",
                                      .key = certs() + "/dev-b.key",
                                      .ca = certs() + "/ca.crt"});
  ASSERT_TRUE(dev_b.ok()) << dev_b.status();
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("dev-a");
  auto worker = v1::Worker::NewStub(grpc::CreateCustomChannel(workers_["dev-a"].address, *dev_b, args));
  grpc::ClientContext infer_context;
  infer_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::InferRequest infer;
  infer.set_model("llama-3.1-8b");
  infer.add_messages()->set_content("free work please");
  auto reader = worker->Infer(&infer_context, infer);
  v1::InferChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status refused = reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();

  auto registry = v1::Registry::NewStub(grpc::CreateChannel(coordinator_.address, *dev_b));
  grpc::ClientContext hb_context;
  hb_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::HeartbeatRequest hb;
  hb.set_device_id("dev-a");
  hb.set_lease_id("guessed");
  v1::HeartbeatResponse hb_response;
  grpc::Status hb_status = registry->Heartbeat(&hb_context, hb, &hb_response);
  EXPECT_EQ(hb_status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << hb_status.error_message();
  grpc::ClientContext dereg_context;
  dereg_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::DeregisterRequest dereg;
  dereg.set_device_id("dev-a");
  v1::DeregisterResponse dereg_response;
  EXPECT_EQ(registry->Deregister(&dereg_context, dereg, &dereg_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Devices(), (std::set<std::string>{"dev-a", "dev-b"}));

  // The report: device certificates passed as client certificates. dev-b's certificate with a
  // valid API key still may not use the Orchestrator: neither list the mesh nor ask.
  auto orchestrator = v1::Orchestrator::NewStub(grpc::CreateChannel(coordinator_.address, *dev_b));
  grpc::ClientContext list_context;
  list_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  list_context.AddMetadata("authorization", "Bearer " + observer_key_);
  v1::ListDevicesResponse listed;
  grpc::Status list_status = orchestrator->ListDevices(&list_context, {}, &listed);
  EXPECT_EQ(list_status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << list_status.error_message();
  EXPECT_THAT(list_status.error_message(), HasSubstr("role 'device'"));
  EXPECT_EQ(listed.devices_size(), 0);
  grpc::ClientContext ask_context;
  ask_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ask_context.AddMetadata("authorization", "Bearer " + observer_key_);
  v1::CompleteRequest ask;
  ask.add_messages()->set_content("free work please");
  ask.mutable_messages(0)->set_role("user");
  v1::CompleteResponse answer;
  EXPECT_EQ(orchestrator->Complete(&ask_context, ask, &answer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // The client's own certificate still works.
  EXPECT_EQ(Devices(), (std::set<std::string>{"dev-a", "dev-b"}));
}

// The report: in join-token mode a device could advertise another device's address and be
// paid for its work (4 of 10). The coordinator now challenges every worker it dials to prove
// the device it was dialled as; the borrowed address fails the challenge and is never used.
TEST_F(SecurityTest, ADeviceAdvertisingAnotherWorkersAddressIsNeverUsedNorPaid) {
  StartCoordinator();  // plaintext with join tokens
  StartWorker("dev-z-honest", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-z-honest"}));
  // A real worker with its own valid token, registering the honest worker's address.
  StartWorker("dev-a-thief", "llama-3.1-8b", {"--advertise_address=" + workers_["dev-z-honest"].address});
  ASSERT_TRUE(WaitForDevices({"dev-z-honest", "dev-a-thief"}));
  for (int i = 0; i < 6; ++i) {
    json r = AskJson(absl::StrCat("What is the capital of country number ", i, "?"));
    EXPECT_FALSE(r.value("output", "").empty()) << r.dump();
  }
  CommandResult payouts = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  ASSERT_EQ(payouts.exit_code, 0) << payouts.err;
  json records = json::parse(payouts.out);
  ASSERT_EQ(records.size(), 6u) << records.dump();
  for (const auto& r : records) EXPECT_EQ(r.value("deviceId", ""), "dev-z-honest") << r.dump();
  EXPECT_THAT(coordinator_.process->Log(), HasSubstr("could not prove it is device dev-a-thief"));
}

TEST_F(SecurityTest, JoinTokensRefuseWrongAndReplayedRegistrations) {
  StartCoordinator();  // plaintext with join tokens
  // A token issued for another device, and a made-up one: the workers stop (exit 3).
  auto secret = LoadOrCreateJoinSecret(secret_file());
  ASSERT_TRUE(secret.ok());
  Daemon other_device = StartRefusedWorker(
      "other-device", {"--device_id=dev-a", "--provider_id=prov-dev-a", "--plaintext",
                       "--join_token=" + IssueJoinToken(*secret, "dev-b", "prov-dev-a")});
  Daemon made_up = StartRefusedWorker(
      "made-up", {"--device_id=dev-c", "--provider_id=prov-dev-c", "--plaintext",
                  "--join_token=ljt1.0000"});
  EXPECT_EQ(WEXITSTATUS(other_device.process->Wait(absl::Seconds(20))), 3);
  EXPECT_EQ(WEXITSTATUS(made_up.process->Wait(absl::Seconds(20))), 3);
  EXPECT_THAT(other_device.process->Log(), HasSubstr("UNAUTHENTICATED"));

  // A Register captured off the wire and sent again is refused, even with the right token.
  auto registry = v1::Registry::NewStub(
      grpc::CreateChannel(coordinator_.address, grpc::InsecureChannelCredentials()));
  v1::RegisterRequest request;
  request.mutable_protocol_version()->set_major(1);
  request.set_device_id("dev-d");
  request.set_provider_id("prov-dev-d");
  request.set_address("127.0.0.1:9");
  auto* m = request.add_models();
  m->set_name("llama-3.1-8b");
  m->set_family("llama");
  *request.mutable_join() = MakeJoinProof(IssueJoinToken(*secret, "dev-d", "prov-dev-d"),
                                          "dev-d", "prov-dev-d", absl::Now());
  auto send = [&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::RegisterResponse response;
    return registry->Register(&context, request, &response);
  };
  grpc::Status first = send();
  ASSERT_TRUE(first.ok()) << first.error_message();
  grpc::Status replay = send();
  EXPECT_EQ(replay.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(replay.error_message(), HasSubstr("replayed"));
  // Without any proof.
  request.clear_join();
  EXPECT_EQ(send().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Devices(), (std::set<std::string>{"dev-d"}));
}

TEST_F(SecurityTest, TheCoordinatorRefusesToStartWithoutAWayToAuthenticateDevices) {
  CommandResult none = RunCommand("loom-coordinator", {"--ledger_db=" + db_, "--grpc_listen=127.0.0.1:0"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("--plaintext"));
  CommandResult plaintext_only = RunCommand(
      "loom-coordinator", {"--ledger_db=" + db_, "--grpc_listen=127.0.0.1:0", "--plaintext"});
  EXPECT_EQ(plaintext_only.exit_code, 2);
  EXPECT_THAT(plaintext_only.err, HasSubstr("--join_secret_file"));
  CommandResult worker = RunCommand("loom-worker", {"--model=llama-3.1-8b", "--device_id=d", "--plaintext"});
  EXPECT_EQ(worker.exit_code, 2);
  EXPECT_THAT(worker.err, HasSubstr("--join_token"));
  // Issuing a token is a one-shot command.
  CommandResult token = RunCommand("loom-coordinator", {"--join_secret_file=" + secret_file(),
                                                        "--issue_join_token=laptop:alice"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  auto secret = LoadOrCreateJoinSecret(secret_file());
  EXPECT_EQ(absl::StripAsciiWhitespace(token.out), IssueJoinToken(*secret, "laptop", "alice"));
}

// grpc.health.v1 Check for one service name, as grpc_health_probe sends it: the request
// and response are encoded by hand (field 1: the service name; field 1: the status enum), so
// the test needs no generated health stubs. Returns the status (1 SERVING) or -code on error.
int HealthOf(const std::string& address, const std::string& service) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  std::string request = std::string("\x0a") + static_cast<char>(service.size()) + service;
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(20))) return -100;
  if (!status.ok()) return -static_cast<int>(status.error_code());
  std::vector<grpc::Slice> slices;
  if (!out.Dump(&slices).ok()) return -101;
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;  // an empty message is UNKNOWN (0)
}

TEST_F(SecurityTest, ListingDevicesNeedsAKeyAndHealthAnswersPerService) {
  StartCoordinator("127.0.0.1:0", {"--allow_anonymous="});
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));  // the fixture's own key
  CommandResult keyless = Loom({"--coordinator=" + coordinator_.address, "devices"});
  EXPECT_NE(keyless.exit_code, 0) << keyless.out;
  EXPECT_THAT(keyless.err, HasSubstr("API key")) << keyless.err;

  EXPECT_EQ(HealthOf(coordinator_.address, ""), 1);
  EXPECT_EQ(HealthOf(coordinator_.address, "loom.v1.Orchestrator"), 1);
  EXPECT_EQ(HealthOf(coordinator_.address, "loom.v1.Registry"), 1);
  EXPECT_EQ(HealthOf(coordinator_.address, "loom.v1.Nothing"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(HealthOf(workers_["dev-a"].address, "loom.v1.Worker"), 1);
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// Server reflection, v1 (ours) and v1alpha (Debian's gRPC): a tool lists the services and
// fetches the descriptor of one, with the files it imports, on one stream; an unknown symbol
// is an error response on the same stream, which stays usable.
TEST_F(SecurityTest, ReflectionV1AndV1alphaListTheServicesAndServeTheirDescriptors) {
  StartCoordinator();
  auto channel = grpc::CreateChannel(coordinator_.address, grpc::InsecureChannelCredentials());
  auto stub = grpc::reflection::v1::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1::ServerReflectionRequest request;
  grpc::reflection::v1::ServerReflectionResponse response;

  request.set_list_services("*");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> names;
  for (const auto& s : response.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count("loom.v1.Orchestrator") && names.count("loom.v1.Registry") &&
              names.count("grpc.health.v1.Health") && names.count("grpc.reflection.v1.ServerReflection"))
      << response.DebugString();

  request.set_file_containing_symbol("loom.v1.Orchestrator");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> files;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    files.push_back(file.name());
  }
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(files[0], "loom/v1/orchestrator.proto");
  EXPECT_NE(std::find(files.begin(), files.end(), "loom/v1/common.proto"), files.end())
      << "its imports come with it";

  request.set_file_containing_symbol("loom.v1.Nothing");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  // v1alpha, as older tools ask, through a generic stream (the messages are v1's bytes).
  grpc::GenericStub generic(channel);
  grpc::ClientContext alpha_context;
  alpha_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&alpha_context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::reflection::v1::ServerReflectionRequest list;
  list.set_list_services("*");
  grpc::Slice slice(list.SerializeAsString());
  grpc::ByteBuffer out(&slice, 1), in;
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  grpc::reflection::v1::ServerReflectionResponse alpha;
  ASSERT_TRUE(alpha.ParseFromString(bytes));
  bool orchestrator = false;
  for (const auto& s : alpha.list_services_response().service()) orchestrator |= s.name() == "loom.v1.Orchestrator";
  EXPECT_TRUE(orchestrator) << alpha.DebugString();
  alpha_context.TryCancel();
  grpc::Status finished;
  call->Finish(&finished, reinterpret_cast<void*>(4));
  while (cq.Next(&tag, &ok)) {
    if (tag == reinterpret_cast<void*>(4)) break;
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// A reflection client nobody here wrote (grpc-js-reflection-client, pinned in
// tests/clients) finds the services and methods over v1 and v1alpha.
TEST_F(SecurityTest, AThirdPartyReflectionClientFindsTheServicesOverV1AndV1alpha) {
  const std::string clients = std::string(LOOM_SOURCE_DIR) + "/tests/clients";
  ASSERT_FALSE(ReadFile(clients + "/node_modules/grpc-js-reflection-client/package.json").empty())
      << "the pinned JavaScript clients are not installed: run deploy/setup.sh";
  StartCoordinator();
  CommandResult run = RunCommand("/usr/bin/env",
                                 {"LOOM_GRPC=" + coordinator_.address, "node",
                                  clients + "/grpc_reflection.mjs"},
                                 absl::Seconds(60));
  std::cout << run.out << run.err;
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("2 passed, 0 failed"));
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// A health probe nobody here wrote (grpc's grpc-health-check service definition on
// @grpc/grpc-js, pinned in tests/clients), as a balancer or Kubernetes probes: every service
// of a worker and of the coordinator is SERVING, an unknown one is NOT_FOUND, and a Watch open
// on the coordinator hears it drain when it is told to stop.
TEST_F(SecurityTest, AThirdPartyHealthProbeSeesEachServiceAndTheDrain) {
  const std::string clients = std::string(LOOM_SOURCE_DIR) + "/tests/clients";
  ASSERT_FALSE(ReadFile(clients + "/node_modules/grpc-health-check/package.json").empty())
      << "the pinned JavaScript clients are not installed: run deploy/setup.sh";
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  CommandResult worker = RunCommand("/usr/bin/env",
                                    {"LOOM_GRPC=" + workers_["dev-a"].address,
                                     "LOOM_HEALTH_SERVICES=loom.v1.Worker", "node", clients + "/grpc_health.mjs"},
                                    absl::Seconds(60));
  std::cout << worker.out << worker.err;
  EXPECT_EQ(worker.exit_code, 0);
  EXPECT_THAT(worker.out, HasSubstr("3 passed, 0 failed"));

  auto probe = Spawn("/usr/bin/env",
                     {"LOOM_GRPC=" + coordinator_.address, "LOOM_HEALTH_SERVICES=loom.v1.Orchestrator,loom.v1.Registry",
                      "LOOM_HEALTH_WATCH=1", "node", clients + "/grpc_health.mjs"},
                     dir_ + "/probe.log");
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(probe->Log(), "watching: SERVING"); }, absl::Seconds(30)))
      << probe->Log();
  coordinator_.process->Signal(SIGTERM);
  EXPECT_EQ(probe->Wait(absl::Seconds(40)), 0) << probe->Log();
  const std::string log = probe->Log();
  std::cout << log;
  EXPECT_THAT(log, HasSubstr("5 passed, 0 failed"));
  EXPECT_THAT(log, HasSubstr("SERVING -> NOT_SERVING")) << "the drain is announced before the server goes";
}

}  // namespace
}  // namespace loom::testing
