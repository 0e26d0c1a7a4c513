def main():
    print("firegen")
