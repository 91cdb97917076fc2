# Warnings apply to presence's own targets only: generated protobuf code and
# third-party headers are not ours to fix.
function(presence_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(PRESENCE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(PRESENCE_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12's flow analysis reports false maybe-uninitialized warnings inside
    # libstdc++ (std::regex, std::function) once sanitizer instrumentation is
    # added; the plain build keeps the warning. (Clang has no such option.)
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
  if(PRESENCE_SANITIZE MATCHES "thread")
    # GCC warns that TSan cannot model std::atomic_thread_fence, which
    # gRPC's and Abseil's headers use; our code uses none.
    target_compile_options(${target} PRIVATE -Wno-tsan)
  endif()
endfunction()

# presence_proto_library(NAME PROTO_ROOT <dir> PROTOS <files relative to root>
#                        [GRPC] [DEPS <targets>])
# Generates C++ (and with GRPC, gRPC service) code into the build tree and
# builds it as a static library whose include directory is the generated root.
function(presence_proto_library name)
  cmake_parse_arguments(ARG "GRPC" "PROTO_ROOT" "PROTOS;DEPS;IMPORT_DIRS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/gen)
  set(srcs)
  set(hdrs)
  foreach(proto ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(outputs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h)
    set(plugin_args)
    if(ARG_GRPC)
      list(APPEND outputs ${out_dir}/${stem}.grpc.pb.cc ${out_dir}/${stem}.grpc.pb.h)
      set(plugin_args --grpc_out=${out_dir}
                      --plugin=protoc-gen-grpc=${PRESENCE_GRPC_CPP_PLUGIN})
    endif()
    set(import_args -I${ARG_PROTO_ROOT})
    foreach(dir ${ARG_IMPORT_DIRS})
      list(APPEND import_args -I${dir})
    endforeach()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND protobuf::protoc ${import_args} --cpp_out=${out_dir} ${plugin_args}
              ${ARG_PROTO_ROOT}/${proto}
      DEPENDS ${ARG_PROTO_ROOT}/${proto} protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
    foreach(f ${outputs})
      if(f MATCHES "\\.cc$")
        list(APPEND srcs ${f})
      else()
        list(APPEND hdrs ${f})
      endif()
    endforeach()
  endforeach()
  add_library(${name} STATIC ${srcs} ${hdrs})
  target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${out_dir}>)
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(${name} PUBLIC gRPC::grpc++)
  endif()
endfunction()
