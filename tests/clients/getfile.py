"""getfile.py (Programming Python, 2nd ed., Example 10-10), ported to Python 3.

Client and server of a one-file transfer protocol: the client sends the file name and
'\\n', the server sends the file's raw bytes and closes; the client saves them in the
current directory under the name's last component.

server=> getfile.py  -mode server            [-port nnn] [-host hhh|localhost]
client=> getfile.py [-mode client] -file fff [-port nnn] [-host hhh|localhost]
"""
import os
import sys
import threading
import time
from socket import AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR, socket


def now():
    return time.ctime(time.time())


blksz = 1024
defaultHost = 'localhost'
defaultPort = 50001

helptext = __doc__


def parsecommandline():
    opts = {}
    args = sys.argv[1:]
    while len(args) >= 2:
        opts[args[0]] = args[1]
        args = args[2:]
    return opts


def client(host, port, filename):
    sock = socket(AF_INET, SOCK_STREAM)
    sock.connect((host, port))
    sock.send((filename + '\n').encode())
    dropdir = os.path.split(filename)[1]
    file = open(dropdir, 'wb')
    while True:
        data = sock.recv(blksz)
        if not data:
            break
        file.write(data)
    sock.close()
    file.close()
    print('Client got', filename, 'at', now(), flush=True)


def serverthread(clientsock):
    sockfile = clientsock.makefile('r')
    filename = sockfile.readline()[:-1]
    try:
        file = open(filename, 'rb')
        while True:
            data = file.read(blksz)
            if not data:
                break
            clientsock.sendall(data)
    except Exception:
        print('Error downloading file on server:', filename, flush=True)
    clientsock.close()


def server(host, port):
    serversock = socket(AF_INET, SOCK_STREAM)
    serversock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    serversock.bind((host, port))
    serversock.listen(5)
    # Not in the seed: say where we listen, so tests can use port 0.
    print('listening getfile.py tcp://%s:%d' % serversock.getsockname()[:2], flush=True)
    while True:
        clientsock, clientaddr = serversock.accept()
        print('Server connected by', clientaddr, 'at', now(), flush=True)
        threading.Thread(target=serverthread, args=(clientsock,), daemon=True).start()


def main(args):
    host = args.get('-host', defaultHost)
    port = int(args.get('-port', defaultPort))
    if args.get('-mode') == 'server':
        if host == 'localhost':
            host = ''
        server(host, port)
    elif args.get('-file'):
        client(host, port, args['-file'])
    else:
        print(helptext)


if __name__ == '__main__':
    main(parsecommandline())
