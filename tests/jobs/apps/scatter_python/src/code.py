"""Scatter n "square" subjobs, gather their outputs through job-based object references (JBORs).

main returns at once: its outputs are references the platform resolves when the subjobs are done
(the job waits on output meanwhile). "gather" takes the squares as an input of references, so it
starts only once every square is done, and sums them.
"""

import dxpy


@dxpy.entry_point("main")
def main(n=20):
    squares = [dxpy.new_dxjob(fn_input={"x": x}, fn_name="square") for x in range(1, n + 1)]
    refs = [job.get_output_ref("square") for job in squares]
    gather = dxpy.new_dxjob(fn_input={"squares": refs}, fn_name="gather")
    print(f"started {n} square subjobs and {gather.get_id()} to gather them")
    return {"total": gather.get_output_ref("total"), "squares": refs}


@dxpy.entry_point("square")
def square(x):
    print(f"squaring {x}")
    return {"square": x * x}


@dxpy.entry_point("gather")
def gather(squares):
    print(f"gathering {len(squares)} squares")
    return {"total": sum(squares)}


dxpy.run()
