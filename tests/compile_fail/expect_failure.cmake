# Builds TARGET in BUILD_DIR and succeeds only if the build FAILS with EXPECT in its output.
# Invoked by ctest: cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=... -P expect_failure.cmake
execute_process(
  COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET} --config ${CONFIG}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it must not: the static_assert did not fire")
endif()
string(FIND "${all}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${TARGET} failed to compile, but not with the expected message \"${EXPECT}\":\n${all}")
endif()
message(STATUS "${TARGET} failed to compile as expected: found \"${EXPECT}\"")
