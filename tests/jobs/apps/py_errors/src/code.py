import dxpy


@dxpy.entry_point("main")
def main(kind):
    if kind == "app":
        raise dxpy.AppError("please choose a larger k")
    raise ZeroDivisionError("division by zero at line 256")


dxpy.run()
