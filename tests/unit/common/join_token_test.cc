#include "common/join_token.h"

#include <sys/stat.h>

#include <fstream>
#include <unistd.h>

#include "common/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

constexpr char kSecret[] = "00112233445566778899aabbccddeeff";

v1::RegisterRequest Signed(const std::string& token, const std::string& device,
                           const std::string& provider) {
  v1::RegisterRequest r;
  r.set_device_id(device);
  r.set_provider_id(provider);
  *r.mutable_join() = MakeJoinProof(token, device, provider, absl::Now());
  return r;
}

TEST(JoinTokenTest, AProofMatchesOnlyTheDeviceAndProviderItsTokenWasIssuedFor) {
  const std::string token = IssueJoinToken(kSecret, "dev-a", "alice");
  EXPECT_TRUE(JoinProofMatches(kSecret, Signed(token, "dev-a", "alice")));
  // The same token presented for another device or provider, or under another secret.
  EXPECT_FALSE(JoinProofMatches(kSecret, Signed(token, "dev-b", "alice")));
  EXPECT_FALSE(JoinProofMatches(kSecret, Signed(token, "dev-a", "mallory")));
  EXPECT_FALSE(JoinProofMatches("ffeeddccbbaa99887766554433221100", Signed(token, "dev-a", "alice")));
  // A proof whose fields were changed after signing.
  v1::RegisterRequest r = Signed(token, "dev-a", "alice");
  r.mutable_join()->set_unix_ms(r.join().unix_ms() + 1);
  EXPECT_FALSE(JoinProofMatches(kSecret, r));
  // Tokens differ per device; proofs differ per call.
  EXPECT_NE(token, IssueJoinToken(kSecret, "dev-b", "alice"));
  EXPECT_NE(Signed(token, "dev-a", "alice").join().nonce(), Signed(token, "dev-a", "alice").join().nonce());
}

TEST(JoinTokenTest, TheSecretFileIsCreatedPrivateOnceAndReadAfter) {
  const std::string dir = testing::MakeTempDir();
  const std::string path = dir + "/join.secret";
  auto first = LoadOrCreateJoinSecret(path);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 64u);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(*LoadOrCreateJoinSecret(path), *first);
  std::ofstream(dir + "/short") << "abc\n";
  EXPECT_THAT(LoadOrCreateJoinSecret(dir + "/short").status().message(),
              ::testing::HasSubstr(dir + "/short"));
  EXPECT_FALSE(LoadOrCreateJoinSecret(dir + "/no/such/dir/secret").ok());
}

TEST(TlsTest, SubjectsAreParsedIntoNameRoleAndProvider) {
  PeerIdentity id;
  ParseSubject("CN=dev-a,OU=device,O=alice", &id);
  EXPECT_EQ(id.name, "dev-a");
  EXPECT_EQ(id.role, "device");
  EXPECT_EQ(id.org, "alice");
  EXPECT_TRUE(IsValidId("dev-a.b_c"));
  EXPECT_FALSE(IsValidId(""));
  EXPECT_FALSE(IsValidId("a,OU=coordinator"));
  EXPECT_FALSE(IsValidId(std::string(129, 'a')));
}

TEST(TlsTest, IncompleteSettingsNameTheFlag) {
  EXPECT_THAT(ServerCredentialsFor({}).status().message(), ::testing::HasSubstr("--plaintext"));
  EXPECT_THAT(ChannelCredentialsFor({}).status().message(), ::testing::HasSubstr("--tls_ca"));
  EXPECT_THAT(ServerCredentialsFor({.cert = "c.pem"}).status().message(),
              ::testing::HasSubstr("--tls_key"));
  EXPECT_THAT(ServerCredentialsFor({.cert = "/nonexistent.pem", .key = "/nonexistent.key"})
                  .status()
                  .message(),
              ::testing::HasSubstr("/nonexistent.pem"));
  EXPECT_FALSE(ServerCredentialsFor({.cert = "c", .key = "k", .plaintext = true}).ok());
  EXPECT_TRUE(ServerCredentialsFor({.plaintext = true}).ok());
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(DialProofTest, OnlyTheDevicesOwnTokenAnswersTheChallenge) {
  const std::string secret(32, 's');
  const std::string token = IssueJoinToken(secret, "dev-a", "prov-a");
  const std::string challenge = NewDialChallenge();
  EXPECT_EQ(challenge.size(), 32u);
  EXPECT_NE(challenge, NewDialChallenge()) << "fresh every time";
  const std::string proof = DialProof(token, "dev-a", challenge);
  EXPECT_TRUE(DialProofMatches(token, "dev-a", challenge, proof));
  // Another device's token, another device id, another challenge, a truncated proof: no.
  const std::string other = IssueJoinToken(secret, "dev-b", "prov-a");
  EXPECT_FALSE(DialProofMatches(token, "dev-a", challenge, DialProof(other, "dev-a", challenge)));
  EXPECT_FALSE(DialProofMatches(token, "dev-a", challenge, DialProof(token, "dev-b", challenge)));
  EXPECT_FALSE(DialProofMatches(token, "dev-a", NewDialChallenge(), proof));
  EXPECT_FALSE(DialProofMatches(token, "dev-a", challenge, proof.substr(0, 10)));
  EXPECT_FALSE(DialProofMatches(token, "dev-a", challenge, ""));
}

}  // namespace
}  // namespace loom
