# The installed package, as a user's project sees it (a ctest test; see tests/CMakeLists.txt):
# install this build into a fresh prefix, export and AOT-compile the seed MLP with the installed
# `blockjit`, then configure, build and run examples/consumer against the prefix alone.
# Arguments: -DBUILD=<this build> -DSOURCE=<source tree> -DWORK=<scratch folder>
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
function(step)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("$ ${ARGN}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()
step(${CMAKE_COMMAND} --install ${BUILD} --prefix ${WORK}/prefix)
foreach(f include/blockjit/blockjit.h include/blockjit/frontend/tensor.h include/blockjit/codegen/aot_abi.h
          lib/cmake/blockjit/blockjitConfig.cmake lib/libbj_aot.a bin/blockjit)
  if(NOT EXISTS ${WORK}/prefix/${f})
    message(FATAL_ERROR "the install lacks ${f}")
  endif()
endforeach()
step(${WORK}/prefix/bin/blockjit export mlp --out ${WORK}/mlp)
step(${WORK}/prefix/bin/blockjit aot ${WORK}/mlp --out ${WORK}/aot --name seed_mlp)
step(${CMAKE_COMMAND} -S ${SOURCE}/examples/consumer -B ${WORK}/build -DCMAKE_BUILD_TYPE=Release
     -DCMAKE_PREFIX_PATH=${WORK}/prefix -DAOT_DIR=${WORK}/aot)
step(${CMAKE_COMMAND} --build ${WORK}/build -j 2)
step(${WORK}/build/consumer ${WORK}/mlp)
if(NOT last_output MATCHES "trained ok, exported ok, .* imported: ok")
  message(FATAL_ERROR "the consumer's results are wrong")
endif()
step(${WORK}/build/consumer_aot)
file(REMOVE_RECURSE ${WORK})
