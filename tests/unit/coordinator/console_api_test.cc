#include "coordinator/front/console_api.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"
#include "ledger/sqlite_ledger.h"
#include "tests/fakes/ledger_records.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using Role = ConsoleApi::Role;

constexpr char kOperatorKey[] = "an-operator-key-of-enough-length";

// The console's rules over a real (in-memory) ledger and request log; no runner or devices
// are needed for who-sees-what (the endpoints that read them are covered by console_test).
class ConsoleApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ledger = SqliteLedger::Open({.path = ":memory:"});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), 10 * kMicroPerCredit, "alice").ok());
    ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "prov-a", 300)}}).ok());
    ASSERT_TRUE(ledger_->Settle({"r2", ClientAccount("alice"), {Record("r2", "prov-b", 200)}}).ok());
    alice_ = "Bearer " + ledger_->CreateKey("alice")->second;
    bob_ = "Bearer " + ledger_->CreateKey("bob")->second;
    provider_ = "Bearer " + ledger_->CreateProviderKey("prov-a")->second;
    v1::CompleteRequest ask;
    ask.add_messages()->set_content("hello");
    log_.Begin("client:alice/a1", "a1", ClientAccount("alice"), ask);
    log_.Begin("b1", "b1", ClientAccount("bob"), ask);
    auth_ = std::make_unique<Authenticator>(ledger_.get(), "");
    api_ = std::make_unique<ConsoleApi>(nullptr, nullptr, &log_, auth_.get(), ledger_.get(),
                                        kOperatorKey);
  }

  ConsoleApi::Viewer As(const std::string& authorization) {
    absl::StatusOr<ConsoleApi::Viewer> v = api_->Authenticate(authorization);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.value_or(ConsoleApi::Viewer{});
  }

  std::unique_ptr<SqliteLedger> ledger_;
  RequestLog log_{10};
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<ConsoleApi> api_;
  std::string alice_, bob_, provider_;
};

TEST_F(ConsoleApiTest, EachKeyIsItsViewerAndAnythingElseIsNobody) {
  EXPECT_EQ(As(std::string("Bearer ") + kOperatorKey).role, Role::kOperator);
  const ConsoleApi::Viewer alice = As(alice_);
  EXPECT_EQ(alice.role, Role::kClient);
  EXPECT_EQ(alice.name, "alice");
  const ConsoleApi::Viewer provider = As(provider_);
  EXPECT_EQ(provider.role, Role::kProvider);
  EXPECT_EQ(provider.name, "prov-a");
  for (const std::string& nobody :
       {std::string(""), std::string("Bearer loom_nope"),
        std::string("Bearer ") + kOperatorKey + "x", std::string(kOperatorKey)}) {
    EXPECT_TRUE(absl::IsUnauthenticated(api_->Authenticate(nobody).status())) << nobody;
  }
  for (const ConsoleApi::Viewer& v : {alice, provider, As(std::string("Bearer ") + kOperatorKey)}) {
    const ConsoleApi::Viewer back = ConsoleApi::Decode(ConsoleApi::Encode(v));
    EXPECT_EQ(back.role, v.role);
    EXPECT_EQ(back.name, v.name);
  }
}

TEST_F(ConsoleApiTest, RequestsAreTheClientsOwnAndNoneOfAProviders) {
  auto all = api_->Requests(As(std::string("Bearer ") + kOperatorKey));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)["requests"].size(), 2u);
  auto mine = api_->Requests(As(alice_));
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ((*mine)["requests"].size(), 1u);
  EXPECT_EQ((*mine)["requests"][0]["displayId"], "a1");
  EXPECT_EQ((*mine)["requests"][0]["outcome"], "running");
  EXPECT_TRUE(api_->Request(As(alice_), "client:alice/a1").ok());
  EXPECT_TRUE(absl::IsNotFound(api_->Request(As(bob_), "client:alice/a1").status()));
  EXPECT_TRUE(absl::IsPermissionDenied(api_->Requests(As(provider_)).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(api_->Request(As(provider_), "b1").status()));
}

TEST_F(ConsoleApiTest, MoneyIsTheViewersOwn) {
  auto client = api_->Money(As(alice_));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)["balanceMicro"], 10 * kMicroPerCredit - 500);
  EXPECT_FALSE(client->contains("payouts"));
  auto provider = api_->Money(As(provider_));
  ASSERT_TRUE(provider.ok());
  ASSERT_EQ((*provider)["payouts"].size(), 1u);
  EXPECT_EQ((*provider)["payouts"][0]["provider"], "prov-a");
  EXPECT_FALSE(provider->contains("accounts"));
  auto books = api_->Money(As(std::string("Bearer ") + kOperatorKey));
  ASSERT_TRUE(books.ok());
  EXPECT_EQ((*books)["payouts"].size(), 2u);
  EXPECT_FALSE((*books)["accounts"].empty());
  EXPECT_EQ((*books)["recentRecords"].size(), 2u);
  ASSERT_EQ((*books)["recentTransactions"].size(), 3u);  // a grant, two settlements
  EXPECT_EQ((*books)["recentTransactions"][0]["reference"], "settle:r2");

  auto csv = api_->PayoutsCsv(As(provider_));
  ASSERT_TRUE(csv.ok());
  EXPECT_THAT(*csv, HasSubstr("prov-a,0.000300,"));
  EXPECT_THAT(*csv, ::testing::Not(HasSubstr("prov-b")));
  EXPECT_TRUE(absl::IsPermissionDenied(api_->PayoutsCsv(As(alice_)).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(api_->Verify(As(alice_)).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(api_->Verify(As(provider_)).status()));
  auto verified = api_->Verify(As(std::string("Bearer ") + kOperatorKey));
  ASSERT_TRUE(verified.ok());
  EXPECT_EQ((*verified)["ok"], true);
}

TEST_F(ConsoleApiTest, ExplainRefusesABodyWithoutAPrompt) {
  for (const char* body : {"", "[]", "{}", R"({"prompt": 3})", R"({"prompt": ""})",
                           R"({"prompt": "hi", "mode": "fastest"})"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(api_->Explain(As(alice_), body).status())) << body;
  }
  EXPECT_TRUE(absl::IsPermissionDenied(api_->Explain(As(provider_), R"({"prompt": "hi"})").status()));
}

}  // namespace
}  // namespace loom
