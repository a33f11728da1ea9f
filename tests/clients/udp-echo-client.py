"""The seed datagram echo client (developerWorks "Programming Linux sockets", Listing 12),
ported to Python 3.

usage: python3 udp-echo-client.py [HOST [MESSAGE...]]   (PORT env var, default 23000)

Each message goes out as one datagram; the answer is printed. Unlike the seed, the client
waits at most 5 seconds for an answer (a datagram can be lost, or refused by the server).
"""
import os
import sys
from socket import AF_INET, SOCK_DGRAM, socket, timeout

serverHost = 'localhost'
serverPort = int(os.environ.get('PORT', 23000))
messages = [b'Hello World\n']
if len(sys.argv) > 1:
    serverHost = sys.argv[1]
    if len(sys.argv) > 2:
        messages = [x.encode() for x in sys.argv[2:]]

dgramSock = socket(AF_INET, SOCK_DGRAM)
dgramSock.settimeout(5)
for msg in messages:
    dgramSock.sendto(msg, (serverHost, serverPort))
    try:
        print(dgramSock.recv(65535))
    except timeout:
        print('no answer within 5 s', file=sys.stderr)
        sys.exit(1)
dgramSock.close()
