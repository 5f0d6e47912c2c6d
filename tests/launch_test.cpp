// dist::launch without the binary: torchrun's variables in every process, a
// failure's grace period, restarts, and signals passed on. The processes are
// small shell scripts, so each case takes well under a second.

#include "capsnet/dist/launch.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace capsnet::dist {
namespace {

namespace fs = std::filesystem;

class Launch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("capsnet-launch-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Options running `script` with sh in each process; what launch says goes to log_.
  LaunchOptions sh(const std::string& script, int nproc = 2) {
    LaunchOptions o;
    o.nproc = nproc;
    o.program = "/bin/sh";
    o.argv = {"sh", "-c", script};
    o.log = &log_;
    return o;
  }
  std::string read(const std::string& name) {
    std::ifstream in(dir_ / name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  fs::path dir_;
  std::ostringstream log_;
};

TEST_F(Launch, EveryProcessGetsTorchrunsVariables) {
  auto o = sh("echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR "
              "$MASTER_PORT $TORCHELASTIC_RESTART_COUNT $TORCHELASTIC_MAX_RESTARTS > " +
              dir_.string() + "/rank$RANK");
  o.nnodes = 2;
  o.node_rank = 1;
  o.master_addr = "10.0.0.7";
  o.master_port = 29611;
  ASSERT_EQ(launch(o), 0) << log_.str();
  // Machine 1 of 2 with 2 processes each: ranks 2 and 3.
  EXPECT_EQ(read("rank2"), "2 4 0 2 1 10.0.0.7 29611 0 0\n");
  EXPECT_EQ(read("rank3"), "3 4 1 2 1 10.0.0.7 29611 0 0\n");
  EXPECT_NE(log_.str().find("2 processes (ranks 2-3 of 4), rendezvous at 10.0.0.7:29611"),
            std::string::npos)
      << log_.str();
}

TEST_F(Launch, AFailureEndsTheOthersAfterTheGracePeriod) {
  // Rank 0 fails at once; rank 1 would sleep for a minute.
  auto o = sh("if [ $RANK = 0 ]; then exit 3; fi; exec sleep 60");
  o.grace = 0.2;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(launch(o), 3);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30) << "the sleeping rank was not terminated";
  EXPECT_NE(log_.str().find("rank 0 (PID"), std::string::npos) << log_.str();
  EXPECT_NE(log_.str().find("exited with status 3"), std::string::npos) << log_.str();
  EXPECT_NE(log_.str().find("still running 0.2 s after the first failure; terminating them"),
            std::string::npos)
      << log_.str();
}

TEST_F(Launch, TheGroupRestartsUntilItSucceedsOrNoRestartsAreLeft) {
  // Fails on the first two attempts, succeeds on the third.
  const std::string script = "[ $TORCHELASTIC_RESTART_COUNT = 2 ] || exit 5";
  auto o = sh(script);
  o.max_restarts = 2;
  EXPECT_EQ(launch(o), 0) << log_.str();
  EXPECT_NE(log_.str().find("restarting the group (restart 2 of 2)"), std::string::npos)
      << log_.str();
  EXPECT_NE(log_.str().find("attempt 3 of 3"), std::string::npos) << log_.str();

  auto fewer = sh(script);
  fewer.max_restarts = 1;
  log_.str("");
  EXPECT_EQ(launch(fewer), 5);
  EXPECT_NE(log_.str().find("the group failed 2 times; no restarts left (--max-restarts 1)"),
            std::string::npos)
      << log_.str();
}

TEST_F(Launch, ASignalIsPassedOnAndStopsRestarts) {
  auto o = sh("trap 'kill $!; echo got >> " + dir_.string() + "/signals; exit 7' TERM; sleep 60 & wait");
  o.max_restarts = 3;
  int polls = 0;
  // SIGTERM once, after the processes had time to set their trap.
  o.take_signal = [&polls] { return ++polls == 20 ? SIGTERM : 0; };
  EXPECT_EQ(launch(o), 7) << log_.str();
  EXPECT_EQ(read("signals"), "got\ngot\n");
  EXPECT_EQ(log_.str().find("restarting"), std::string::npos) << log_.str();
}

TEST_F(Launch, InconsistentOptionsAreRefused) {
  auto o = sh("true");
  o.nnodes = 2;
  o.node_rank = 2;
  EXPECT_THROW(launch(o), std::invalid_argument);
  o.node_rank = 1; // several machines need a port agreed on beforehand
  try {
    launch(o);
    FAIL() << "a two-machine job started without --master-port";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("needs --master-addr"), std::string::npos) << e.what();
  }
  o.argv.clear();
  EXPECT_THROW(launch(o), std::invalid_argument);
}

TEST(FreePort, IsAUsablePort) {
  const int port = free_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

} // namespace
} // namespace capsnet::dist
